//! A fast decoder for single-component lossless JPEG (ITU-T T.81 process 14, Huffman
//! coded): the transfer syntaxes 1.2.840.10008.1.2.4.57 and .70 in which most CT exports
//! arrive. jpeg-decoder 0.3 (behind dicom-pixeldata) spends about 10 ms on a 512×512
//! slice, a quarter of a whole analysis; this table-driven decoder needs about a fifth of
//! that (`tests/jpeg_lossless_real.rs` prints both). It is not a general JPEG decoder: anything beyond one component, restart
//! intervals of whole lines and a complete entropy-coded segment gives `NotHandled` or
//! `Corrupt`, and the caller then falls back to dicom-pixeldata, whose verdict stands.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LosslessError {
    #[error("lossless JPEG variant not handled by the fast path: {0}")]
    NotHandled(&'static str),
    #[error("corrupt lossless JPEG: {0}")]
    Corrupt(&'static str),
}

use LosslessError::{Corrupt, NotHandled};

/// Decoded samples, row-major, already shifted left by the point transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub precision: u8,
    pub samples: Vec<u16>,
}

/// Decodes one lossless JPEG image (SOI … first scan).
pub fn decode(data: &[u8]) -> Result<Decoded, LosslessError> {
    decode_checked(data, None)
}

/// Like `decode`, but refuses a frame whose size is not `expected` (width, height) — the
/// size the DICOM header declares — before allocating anything for it.
pub fn decode_expecting(data: &[u8], expected: (usize, usize)) -> Result<Decoded, LosslessError> {
    decode_checked(data, Some(expected))
}

fn decode_checked(data: &[u8], expected: Option<(usize, usize)>) -> Result<Decoded, LosslessError> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(Corrupt("no start-of-image marker"));
    }
    let mut pos = 2;
    let mut frame: Option<Frame> = None;
    let mut tables: [Option<Huffman>; 4] = Default::default();
    let mut restart_interval = 0usize;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1; // tolerate stray bytes between segments, as libjpeg does
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else {
            return Err(Corrupt("no scan before the end of the data"));
        };
        pos += 1;
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue; // markers without a length
        }
        if marker == 0xD9 {
            return Err(Corrupt("end of image before any scan"));
        }
        let length = read_u16(data, pos).ok_or(Corrupt("segment length past the end"))? as usize;
        if length < 2 || pos + length > data.len() {
            return Err(Corrupt("segment longer than the data"));
        }
        let body = &data[pos + 2..pos + length];
        pos += length;
        match marker {
            0xC3 => frame = Some(Frame::parse(body)?),
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                return Err(NotHandled("not a lossless Huffman frame (SOF3)"));
            }
            0xC4 => parse_tables(body, &mut tables)?,
            0xDD => {
                restart_interval = read_u16(body, 0).ok_or(Corrupt("short DRI segment"))? as usize
            }
            0xDC => return Err(NotHandled("DNL marker")),
            0xDA => {
                let frame = frame.ok_or(Corrupt("scan before the frame header"))?;
                if expected.is_some_and(|size| size != (frame.width, frame.height)) {
                    return Err(Corrupt("frame size differs from the declared image size"));
                }
                // Every sample costs at least one bit of Huffman code: a frame header that
                // claims more samples than the data holds bits is corrupt, and is refused
                // before its size is allocated (65535² samples would be 8 GiB).
                if frame.width * frame.height > (data.len() - pos).saturating_mul(8) {
                    return Err(Corrupt(
                        "frame size larger than the compressed data can hold",
                    ));
                }
                let scan = Scan::parse(body, &frame)?;
                let table = tables[scan.table]
                    .as_ref()
                    .ok_or(Corrupt("scan uses an undefined Huffman table"))?;
                return decode_scan(&data[pos..], &frame, &scan, table, restart_interval);
            }
            _ => {} // APPn, COM and the like
        }
    }
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    precision: u8,
    height: usize,
    width: usize,
    component_id: u8,
}

impl Frame {
    fn parse(body: &[u8]) -> Result<Frame, LosslessError> {
        if body.len() < 6 {
            return Err(Corrupt("short frame header"));
        }
        let precision = body[0];
        let height = u16::from_be_bytes([body[1], body[2]]) as usize;
        let width = u16::from_be_bytes([body[3], body[4]]) as usize;
        let components = body[5];
        if !(2..=16).contains(&precision) {
            return Err(Corrupt("sample precision outside 2..16"));
        }
        if height == 0 {
            return Err(NotHandled("height given by a DNL marker"));
        }
        if width == 0 {
            return Err(Corrupt("zero width"));
        }
        if components != 1 {
            return Err(NotHandled("more than one component"));
        }
        if body.len() < 9 {
            return Err(Corrupt("short frame header"));
        }
        Ok(Frame {
            precision,
            height,
            width,
            component_id: body[6],
        })
    }
}

struct Scan {
    table: usize,
    predictor: u8,
    point_transform: u8,
}

impl Scan {
    fn parse(body: &[u8], frame: &Frame) -> Result<Scan, LosslessError> {
        if body.len() < 4 || body[0] != 1 {
            return Err(NotHandled("scan with other than one component"));
        }
        if body.len() < 6 {
            return Err(Corrupt("short scan header"));
        }
        if body[1] != frame.component_id {
            return Err(Corrupt("scan component is not the frame's"));
        }
        let table = (body[2] >> 4) as usize;
        let predictor = body[3];
        let point_transform = body[5] & 0x0F;
        if table > 3 {
            return Err(Corrupt("Huffman table index above 3"));
        }
        if !(1..=7).contains(&predictor) {
            return Err(NotHandled("predictor selection outside 1..7"));
        }
        if point_transform >= frame.precision {
            return Err(Corrupt("point transform not below the precision"));
        }
        Ok(Scan {
            table,
            predictor,
            point_transform,
        })
    }
}

/// Bits looked up in one step; longer codes take the canonical slow path.
const LOOKUP_BITS: u32 = 9;

/// Bits looked up in one step for a whole difference (code and extra bits together).
const FAST_BITS: u32 = 12;

/// A DC Huffman table (lossless scans use DC tables for the differences).
struct Huffman {
    /// (code length + extra bits, difference) by the next FAST_BITS bits, where both fit;
    /// length 0 = decode the long way.
    fast: Vec<(u8, i16)>,
    /// (code length, symbol) by the next LOOKUP_BITS bits; length 0 = longer code.
    lookup: Vec<(u8, u8)>,
    /// Largest code of each length (1..=16), -1 where none.
    max_code: [i32; 17],
    /// Index into `symbols` of the first code of each length, minus that code.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

fn parse_tables(mut body: &[u8], tables: &mut [Option<Huffman>; 4]) -> Result<(), LosslessError> {
    while !body.is_empty() {
        if body.len() < 17 {
            return Err(Corrupt("short Huffman table"));
        }
        let (class, index) = (body[0] >> 4, (body[0] & 0x0F) as usize);
        if index > 3 {
            return Err(Corrupt("Huffman table index above 3"));
        }
        let counts: [u8; 16] = body[1..17].try_into().expect("17 bytes checked");
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if body.len() < 17 + total {
            return Err(Corrupt("Huffman table longer than its segment"));
        }
        let symbols = &body[17..17 + total];
        // AC tables (class 1) are legal in the segment but unused by lossless scans.
        if class == 0 {
            tables[index] = Some(Huffman::new(&counts, symbols)?);
        }
        body = &body[17 + total..];
    }
    Ok(())
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Huffman, LosslessError> {
        let mut lookup = vec![(0u8, 0u8); 1 << LOOKUP_BITS];
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code = 0u32;
        let mut k = 0usize;
        for length in 1..=16u32 {
            let count = counts[length as usize - 1] as usize;
            offset[length as usize] = k as i32 - code as i32;
            for _ in 0..count {
                if code >= 1 << length {
                    return Err(Corrupt("Huffman code lengths overflow"));
                }
                if length <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - length;
                    let first = (code << shift) as usize;
                    for entry in &mut lookup[first..first + (1 << shift)] {
                        *entry = (length as u8, symbols[k]);
                    }
                }
                code += 1;
                k += 1;
            }
            if count > 0 {
                max_code[length as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        let mut fast = vec![(0u8, 0i16); 1 << FAST_BITS];
        for (index, entry) in fast.iter_mut().enumerate() {
            let (length, category) = lookup[index >> (FAST_BITS - LOOKUP_BITS)];
            let (length, category) = (length as u32, category as u32);
            if length == 0 || category > 15 || length + category > FAST_BITS {
                continue;
            }
            let extra = (index as u32 >> (FAST_BITS - length - category)) & ((1 << category) - 1);
            *entry = ((length + category) as u8, extend(extra, category) as i16);
        }
        Ok(Huffman {
            fast,
            lookup,
            max_code,
            offset,
            symbols: symbols.to_vec(),
        })
    }

    /// The next difference (T.81 H.1.2.2): category symbol, then that many extra bits.
    #[inline(always)]
    fn next_difference(&self, bits: &mut BitReader) -> Result<i32, LosslessError> {
        if bits.count < 32 {
            bits.refill();
        }
        let (length, difference) = self.fast[bits.peek(FAST_BITS) as usize];
        if length > 0 {
            bits.consume(length as u32);
            return Ok(difference as i32);
        }
        match self.decode(bits)? as u32 {
            0 => Ok(0),
            category @ 1..=15 => Ok(extend(bits.take(category), category)),
            16 => Ok(32768),
            _ => Err(Corrupt("difference category above 16")),
        }
    }

    fn decode(&self, bits: &mut BitReader) -> Result<u8, LosslessError> {
        let (length, symbol) = self.lookup[bits.peek(LOOKUP_BITS) as usize];
        if length > 0 {
            bits.consume(length as u32);
            return Ok(symbol);
        }
        for length in LOOKUP_BITS + 1..=16 {
            let code = bits.peek(length) as i32;
            if code <= self.max_code[length as usize] {
                bits.consume(length);
                let index = (self.offset[length as usize] + code) as usize;
                return self
                    .symbols
                    .get(index)
                    .copied()
                    .ok_or(Corrupt("bad Huffman code"));
            }
        }
        Err(Corrupt("bad Huffman code"))
    }
}

/// T.81 F.2.2.1 EXTEND: `category` extra bits to a signed difference; a leading 0 bit
/// means a negative one.
#[inline(always)]
fn extend(bits: u32, category: u32) -> i32 {
    let v = bits as i32;
    if category == 0 {
        0
    } else if v < 1 << (category - 1) {
        v - (1 << category) + 1
    } else {
        v
    }
}

/// MSB-first bit reader over entropy-coded data: removes the 0x00 stuffed after 0xFF and
/// stops at a marker, feeding zero bits past it (counted, so over-reads are detected).
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    count: u32,
    padding: u32,
    at_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            count: 0,
            padding: 0,
            at_marker: false,
        }
    }

    /// Tops the buffer up to at least 57 bits.
    #[inline]
    fn refill(&mut self) {
        while self.count <= 56 {
            let byte = self.next_byte().unwrap_or_else(|| {
                self.padding += 8;
                0
            });
            self.acc |= (byte as u64) << (56 - self.count);
            self.count += 8;
        }
    }

    /// The next data byte, or None at a marker or the end of the data.
    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        if self.at_marker {
            return None;
        }
        let &b = self.data.get(self.pos)?;
        if b != 0xFF {
            self.pos += 1;
            Some(b)
        } else if self.data.get(self.pos + 1) == Some(&0x00) {
            self.pos += 2;
            Some(0xFF)
        } else {
            self.at_marker = true;
            None
        }
    }

    #[inline]
    fn peek(&self, n: u32) -> u32 {
        (self.acc >> (64 - n)) as u32
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    /// Reads `n` (1..=16) bits as an unsigned value.
    #[inline]
    fn take(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// True when decoding has eaten into the zero bits fed past a marker or the end.
    fn overran(&self) -> bool {
        self.padding > self.count
    }

    /// At a restart boundary: drops the bits left in the buffer (the byte padding) and
    /// steps over the expected RSTn marker.
    fn restart(&mut self, expected: u8) -> Result<(), LosslessError> {
        if self.overran() {
            return Err(Corrupt("restart interval shorter than its data"));
        }
        // What is left must be the padding of the last byte, then the marker.
        if self.count - self.padding >= 8 || self.data.get(self.pos) != Some(&0xFF) {
            return Err(Corrupt("data left in a restart interval"));
        }
        let mut at = self.pos;
        while self.data.get(at) == Some(&0xFF) {
            at += 1;
        }
        if self.data.get(at) != Some(&(0xD0 + expected)) {
            return Err(Corrupt("missing or out-of-order restart marker"));
        }
        self.pos = at + 1;
        self.acc = 0;
        self.count = 0;
        self.padding = 0;
        self.at_marker = false;
        Ok(())
    }
}

fn decode_scan(
    data: &[u8],
    frame: &Frame,
    scan: &Scan,
    table: &Huffman,
    restart_interval: usize,
) -> Result<Decoded, LosslessError> {
    let (width, height) = (frame.width, frame.height);
    if !restart_interval.is_multiple_of(width) {
        return Err(NotHandled("restart interval not a whole number of lines"));
    }
    let restart_lines = restart_interval / width;
    let mut out = vec![0u16; width * height];
    let mut bits = BitReader::new(data);
    let initial = 1i32 << (frame.precision - scan.point_transform - 1);
    let mut next_restart = 0u8;
    let mut first_line = true;
    for y in 0..height {
        if restart_lines > 0 && y > 0 && y % restart_lines == 0 {
            bits.restart(next_restart)?;
            next_restart = (next_restart + 1) % 8;
            first_line = true;
        }
        let (done, rest) = out.split_at_mut(y * width);
        let above = if first_line {
            None
        } else {
            Some(&done[(y - 1) * width..])
        };
        let row = &mut rest[..width];
        let first = match above {
            None => initial,
            Some(above) => above[0] as i32,
        };
        let mut left = (first + table.next_difference(&mut bits)?) & 0xFFFF;
        row[0] = left as u16;
        match above {
            Some(above) if scan.predictor != 1 => {
                for x in 1..width {
                    let (ra, rb, rc) = (left, above[x] as i32, above[x - 1] as i32);
                    let prediction = match scan.predictor {
                        2 => rb,
                        3 => rc,
                        4 => ra + rb - rc,
                        5 => ra + ((rb - rc) >> 1),
                        6 => rb + ((ra - rc) >> 1),
                        _ => (ra + rb) >> 1,
                    };
                    // modulo 2^16 (T.81 H.1.2.1)
                    left = (prediction + table.next_difference(&mut bits)?) & 0xFFFF;
                    row[x] = left as u16;
                }
            }
            // Every first line, and predictor 1 (Ra): the usual CT case, kept tight.
            _ => {
                for o in &mut row[1..] {
                    left = (left + table.next_difference(&mut bits)?) & 0xFFFF;
                    *o = left as u16;
                }
            }
        }
        first_line = false;
        if bits.overran() {
            return Err(Corrupt("entropy-coded data ends before the last sample"));
        }
    }
    if scan.point_transform > 0 {
        for v in &mut out {
            *v <<= scan.point_transform;
        }
    }
    Ok(Decoded {
        width,
        height,
        precision: frame.precision,
        samples: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal process-14 encoder (one component), to round-trip every predictor,
    /// precision, point transform and restart layout through the decoder.
    struct Encoder {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }

    impl Encoder {
        fn bits(&mut self, value: u32, count: u32) {
            for i in (0..count).rev() {
                self.acc = self.acc << 1 | (value >> i & 1);
                self.n += 1;
                if self.n == 8 {
                    self.byte(self.acc as u8);
                    (self.acc, self.n) = (0, 0);
                }
            }
        }
        fn byte(&mut self, b: u8) {
            self.out.push(b);
            if b == 0xFF {
                self.out.push(0x00);
            }
        }
        fn pad(&mut self) {
            while self.n != 0 {
                self.bits(1, 1);
            }
        }
    }

    /// Canonical codes for category symbols 0..=16 from their lengths.
    fn codes(lengths: &[u8; 17]) -> ([u8; 16], Vec<u8>, [(u32, u32); 17]) {
        let mut order: Vec<u8> = (0..17).collect();
        order.sort_by_key(|&s| (lengths[s as usize], s));
        let mut counts = [0u8; 16];
        for &s in &order {
            counts[lengths[s as usize] as usize - 1] += 1;
        }
        let mut table = [(0, 0); 17];
        let (mut code, mut len) = (0u32, 1u32);
        for &s in &order {
            while len < lengths[s as usize] as u32 {
                code <<= 1;
                len += 1;
            }
            table[s as usize] = (code, len);
            code += 1;
        }
        (counts, order, table)
    }

    const SHORT_CODES: [u8; 17] = [2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    const LONG_CODES: [u8; 17] = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16];

    #[allow(clippy::too_many_arguments)]
    fn encode(
        values: &[u16],
        width: usize,
        height: usize,
        precision: u8,
        predictor: u8,
        pt: u8,
        restart_lines: usize,
        lengths: &[u8; 17],
    ) -> Vec<u8> {
        let (counts, symbols, table) = codes(lengths);
        let mut e = Encoder {
            out: vec![0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'l', b'w'],
            acc: 0,
            n: 0,
        };
        let mut dht = vec![0xFF, 0xC4, 0, (19 + symbols.len()) as u8, 0x00];
        dht.extend_from_slice(&counts);
        dht.extend_from_slice(&symbols);
        e.out.extend_from_slice(&dht);
        e.out.extend_from_slice(&[0xFF, 0xC3, 0, 11, precision]);
        e.out.extend_from_slice(&(height as u16).to_be_bytes());
        e.out.extend_from_slice(&(width as u16).to_be_bytes());
        e.out.extend_from_slice(&[1, 7, 0x11, 0]);
        if restart_lines > 0 {
            e.out.extend_from_slice(&[0xFF, 0xDD, 0, 4]);
            e.out
                .extend_from_slice(&((restart_lines * width) as u16).to_be_bytes());
        }
        e.out
            .extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 7, 0x00, predictor, 0, pt]);
        let initial = 1i32 << (precision - pt - 1);
        let mut rst = 0u8;
        let mut first_line = true;
        for y in 0..height {
            if restart_lines > 0 && y > 0 && y % restart_lines == 0 {
                e.pad();
                e.out.extend_from_slice(&[0xFF, 0xD0 + rst]);
                rst = (rst + 1) % 8;
                first_line = true;
            }
            for x in 0..width {
                let at = |yy: usize, xx: usize| values[yy * width + xx] as i32;
                let prediction = match (first_line, x) {
                    (true, 0) => initial,
                    (true, _) => at(y, x - 1),
                    (false, 0) => at(y - 1, 0),
                    (false, _) => {
                        let (ra, rb, rc) = (at(y, x - 1), at(y - 1, x), at(y - 1, x - 1));
                        match predictor {
                            1 => ra,
                            2 => rb,
                            3 => rc,
                            4 => ra + rb - rc,
                            5 => ra + ((rb - rc) >> 1),
                            6 => rb + ((ra - rc) >> 1),
                            _ => (ra + rb) >> 1,
                        }
                    }
                };
                let mut d = (at(y, x) - prediction) & 0xFFFF;
                if d == 32768 {
                    let (code, len) = table[16];
                    e.bits(code, len);
                    continue;
                }
                if d > 32768 {
                    d -= 65536;
                }
                let category = 32 - d.unsigned_abs().leading_zeros();
                let (code, len) = table[category as usize];
                e.bits(code, len);
                if category > 0 {
                    let extra = if d > 0 { d } else { d + (1 << category) - 1 };
                    e.bits(extra as u32, category);
                }
            }
            first_line = false;
        }
        e.pad();
        e.out.extend_from_slice(&[0xFF, 0xD9]);
        e.out
    }

    fn image() -> impl Strategy<Value = (usize, usize, u8, u8, u8, usize, bool, Vec<u16>)> {
        (
            1usize..24,
            1usize..24,
            2u8..=16,
            1u8..=7,
            0u8..4,
            0usize..4,
            any::<bool>(),
        )
            .prop_flat_map(|(w, h, p, pred, pt, rl, long)| {
                let pt = pt.min(p - 1);
                let max = (1u32 << (p - pt)) - 1;
                (
                    Just((w, h, p, pred, pt, rl, long)),
                    // Smooth and wild values: a ramp plus noise, so every category occurs.
                    proptest::collection::vec(0u32..=max, w * h),
                    0u32..=max,
                )
            })
            .prop_map(|((w, h, p, pred, pt, rl, long), noise, base)| {
                let max = (1u32 << (p - pt)) - 1;
                let values = noise
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        if i % 3 == 0 {
                            n as u16
                        } else {
                            (base + (i as u32 % 7)).min(max) as u16
                        }
                    })
                    .collect();
                (w, h, p, pred, pt, rl, long, values)
            })
    }

    proptest! {
        #[test]
        fn round_trips_every_predictor_precision_and_restart_layout(
            (w, h, p, pred, pt, restart_lines, long, values) in image()
        ) {
            let lengths = if long { &LONG_CODES } else { &SHORT_CODES };
            let jpeg = encode(&values, w, h, p, pred, pt, restart_lines, lengths);
            let decoded = decode(&jpeg).unwrap();
            prop_assert_eq!((decoded.width, decoded.height, decoded.precision), (w, h, p));
            let expected: Vec<u16> = values.iter().map(|&v| v << pt).collect();
            prop_assert_eq!(decoded.samples, expected);
        }

        #[test]
        fn damaged_streams_give_an_error_or_an_image_never_a_panic(
            (w, h, p, pred, pt, restart_lines, long, values) in image(),
            damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let lengths = if long { &LONG_CODES } else { &SHORT_CODES };
            let mut jpeg = encode(&values, w, h, p, pred, pt, restart_lines, lengths);
            for (at, byte) in damage {
                let i = at % jpeg.len();
                jpeg[i] = byte;
            }
            jpeg.truncate(cut % (jpeg.len() + 1));
            if let Ok(d) = decode(&jpeg) {
                prop_assert_eq!(d.samples.len(), d.width * d.height);
            }
        }

        #[test]
        fn garbage_is_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut with_soi = vec![0xFF, 0xD8];
            with_soi.extend_from_slice(&bytes);
            let _ = decode(&bytes);
            let _ = decode(&with_soi);
        }
    }

    #[test]
    fn frame_sizes_are_checked_before_allocation() {
        let values = vec![100u16; 16];
        let jpeg = encode(&values, 4, 4, 12, 1, 0, 0, &SHORT_CODES);
        assert!(decode_expecting(&jpeg, (4, 4)).is_ok());
        assert!(matches!(decode_expecting(&jpeg, (1, 1)), Err(Corrupt(_))));
        // A SOF3 that claims 65535 × 65535 over a few bytes of scan data.
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC3])
            .expect("the encoder writes SOF3");
        let mut huge = jpeg.clone();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(decode(&huge), Err(Corrupt(_))));
    }

    #[test]
    fn a_truncated_scan_is_corrupt_not_zero_filled() {
        let values: Vec<u16> = (0..64 * 8).map(|i| (i * 37 % 4096) as u16).collect();
        let jpeg = encode(&values, 64, 8, 12, 1, 0, 0, &SHORT_CODES);
        assert!(decode(&jpeg).is_ok());
        let cut = &jpeg[..jpeg.len() - 40];
        assert!(matches!(decode(cut), Err(Corrupt(_))), "{:?}", decode(cut));
    }

    #[test]
    fn other_jpeg_processes_are_left_to_the_fallback() {
        let values = vec![100u16; 16];
        let mut jpeg = encode(&values, 4, 4, 8, 1, 0, 0, &SHORT_CODES);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC3]).unwrap();
        jpeg[sof + 1] = 0xC1; // extended sequential DCT
        assert_eq!(
            decode(&jpeg),
            Err(NotHandled("not a lossless Huffman frame (SOF3)"))
        );
    }
}
