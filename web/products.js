// Matrix products with WebAssembly SIMD, for Python under Pyodide: NumPy there
// has no BLAS and no SIMD, and a query's embedding spent most of its time in
// the encoder's dense products (see kernels.py, which calls this module).
// Beside them, the decoding of 4-bit rows (a probed cluster's scorer rows).
//
// The kernels are a WebAssembly module written out below instruction by
// instruction (no toolchain needed). It is loaded as a Pyodide side module so
// that it works on Pyodide's own memory: Python hands it the addresses of
// NumPy arrays, and nothing is copied. Where WebAssembly SIMD is missing the
// module does not load, and Python keeps to NumPy.

// -- a few WebAssembly encodings ---------------------------------------------

function uleb(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

function sleb(n) {
  const out = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function name(text) {
  const bytes = Array.from(new TextEncoder().encode(text));
  return [...uleb(bytes.length), ...bytes];
}

function section(id, payload) {
  return [id, ...uleb(payload.length), ...payload];
}

function vector(items) {
  return [...uleb(items.length), ...items.flat()];
}

const I32 = 0x7f;
const V128 = 0x7b;
const SIMD = 0xfd;
const op = {
  get: (i) => [0x20, ...uleb(i)],
  set: (i) => [0x21, ...uleb(i)],
  i32: (n) => [0x41, ...sleb(n)],
  add: [0x6a],
  mul: [0x6c],
  shl: [0x74],
  geU: [0x4f],
  gtU: [0x4b],
  brIf: (depth) => [0x0d, ...uleb(depth)],
  br: (depth) => [0x0c, ...uleb(depth)],
  f32Add: [0x92],
  f32Store: [0x38, 2, 0],  // align 4, offset 0
  v128Load: [SIMD, 0x00, 2, 0],  // align hint 4 (rows of float32), offset 0
  v128Zero: [SIMD, 0x0c, ...new Array(16).fill(0)],
  f32x4Mul: [SIMD, ...uleb(0xe6)],
  f32x4Add: [SIMD, ...uleb(0xe4)],
  lane: (i) => [SIMD, 0x1f, i],
  f32Load: [0x2a, 2, 0],
  f32x4Splat: [SIMD, 0x13],
  i8x16Splat: [SIMD, 0x0f],
  v128Load64Zero: [SIMD, ...uleb(0x5d), 0, 0],  // 8 bytes into the low half, offset 0
  v128Store: [SIMD, 0x0b, 2, 0],
  v128And: [SIMD, ...uleb(0x4e)],
  i8x16ShrU: [SIMD, ...uleb(0x6d)],
  i8x16Sub: [SIMD, ...uleb(0x71)],
  shuffle: (lanes) => [SIMD, 0x0d, ...lanes],
  i16x8FromLow: [SIMD, ...uleb(0x87)],  // i16x8.extend_low_i8x16_s
  i16x8FromHigh: [SIMD, ...uleb(0x88)],
  i32x4FromLow: [SIMD, ...uleb(0xa7)],  // i32x4.extend_low_i16x8_s
  i32x4FromHigh: [SIMD, ...uleb(0xa8)],
  f32x4FromI32x4: [SIMD, ...uleb(0xfa)],  // f32x4.convert_i32x4_s
};

// `while (!(stop)) { body }`: stop and body are lists of instructions
function loop(stop, body) {
  return [0x02, 0x40, 0x03, 0x40, ...stop, ...op.brIf(1), ...body, ...op.br(0), 0x0b, 0x0b];
}

// A function's entry in the code section: its locals past the parameters
// (`ints` i32, then `vectors` v128) and its instructions.
function functionBody(ints, vectors, code) {
  const body = [...vector([[...uleb(ints), I32], [...uleb(vectors), V128]]), ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

// -- the products ----------------------------------------------------------------

// lorann_times_transposed(a, b, c, m, n, k): c = a @ b.T for float32 C-order
// a (m, k), b (n, k) and c (m, n), k a multiple of 4. Two rows of b (which
// stay in the first-level cache) against four rows of a at a time, four
// lanes each, in eight sums: b streams from memory once, and each step loads
// six vectors for eight products (8 word pieces times 1536 x 384, in Node:
// 0.30 ms, 5.7x einsum; one row of b against four of a, five vectors for
// four products: 0.40 ms). Each dot product adds lane by lane, then the four
// lanes: the same sums as NumPy's in another order (the last bits of a
// float32 may differ, as they do between NumPy's platforms).
const [A, B, C, M, N, K] = [0, 1, 2, 3, 4, 5];
const [J, I, P, KB, ROWS, ACCS] = [6, 7, 8, 9, 10, 16];  // ROWS: 2 of b, 4 of a; ACCS: 8
const BV = ACCS + 8;  // BV, BV + 1: the vectors of b's two rows; BV + 2: one of a's
const ROW_B = (c) => ROWS + c;
const ROW_A = (r) => ROWS + 2 + r;
const ACC = (r, c) => ACCS + 2 * r + c;

function rowOf(base, index, offset, target) {  // target = base + (index + offset) * kb
  return [...op.get(base), ...op.get(index), ...(offset ? [...op.i32(offset), ...op.add] : []),
          ...op.get(KB), ...op.mul, ...op.add, ...op.set(target)];
}

// rows x cols dot products: rows of a from i on, cols of b from j on
function block(rows, cols) {
  const pairs = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) pairs.push([r, c]);
  const load = (pointer) => [...op.get(pointer), ...op.get(P), ...op.add, ...op.v128Load];
  return [
    ...Array.from({ length: rows }, (_, r) => rowOf(A, I, r, ROW_A(r))).flat(),
    ...pairs.flatMap(([r, c]) => [...op.v128Zero, ...op.set(ACC(r, c))]),
    ...op.i32(0), ...op.set(P),
    ...loop([...op.get(P), ...op.get(KB), ...op.geU], [
      ...Array.from({ length: cols }, (_, c) => [...load(ROW_B(c)), ...op.set(BV + c)]).flat(),
      ...Array.from({ length: rows }, (_, r) => [
        ...load(ROW_A(r)), ...op.set(BV + 2),
        ...Array.from({ length: cols }, (_, c) => [
          ...op.get(ACC(r, c)), ...op.get(BV + 2), ...op.get(BV + c), ...op.f32x4Mul,
          ...op.f32x4Add, ...op.set(ACC(r, c))]).flat(),
      ]).flat(),
      ...op.get(P), ...op.i32(16), ...op.add, ...op.set(P),
    ]),
    ...pairs.flatMap(([r, c]) => storeSum(r, c)),
  ];
}

function storeSum(r, c) {  // c[(i + r) * n + j + c] = the sum of the lanes of ACC(r, c)
  const acc = ACC(r, c);
  return [
    ...op.get(C), ...op.get(I), ...op.i32(r), ...op.add, ...op.get(N), ...op.mul,
    ...op.get(J), ...op.i32(c), ...op.add, ...op.add, ...op.i32(2), ...op.shl, ...op.add,
    ...op.get(acc), ...op.lane(0), ...op.get(acc), ...op.lane(1), ...op.f32Add,
    ...op.get(acc), ...op.lane(2), ...op.get(acc), ...op.lane(3), ...op.f32Add,
    ...op.f32Add, ...op.f32Store,
  ];
}

// for each step of `cols` rows of b: the rows of a, four at a time, then one at a time
function columns(cols) {
  return loop([...op.get(J), ...op.i32(cols), ...op.add, ...op.get(N), ...op.gtU], [
    ...Array.from({ length: cols }, (_, c) => rowOf(B, J, c, ROW_B(c))).flat(),
    ...op.i32(0), ...op.set(I),
    ...loop([...op.get(I), ...op.i32(4), ...op.add, ...op.get(M), ...op.gtU], [
      ...block(4, cols), ...op.get(I), ...op.i32(4), ...op.add, ...op.set(I)]),
    ...loop([...op.get(I), ...op.get(M), ...op.geU], [
      ...block(1, cols), ...op.get(I), ...op.i32(1), ...op.add, ...op.set(I)]),
    ...op.get(J), ...op.i32(cols), ...op.add, ...op.set(J),
  ]);
}

function productsBody() {
  const code = [
    ...op.get(K), ...op.i32(2), ...op.shl, ...op.set(KB),
    ...op.i32(0), ...op.set(J),
    ...columns(2),
    ...columns(1),  // the last row of b when n is odd
  ];
  return functionBody(ACCS - J, 8 + 3, code);
}

// lorann_int4_rows(packed, scales, out, m, w): out (m, 2w) float32 from
// packed (m, w) uint8 and scales (m,) float32, w a multiple of 8: out[i, 2j]
// = ((packed[i, j] & 15) - 8) * scales[i], out[i, 2j + 1] the same of
// packed[i, j] >> 4 (quantization.py's 4-bit rows). Eight bytes at a time:
// their low and high nibbles interleaved into sixteen codes, widened to
// float32 in four vectors, scaled. (NumPy takes a pass over the rows for each
// of those steps: 2 ms of a WordNet query's 48 probed clusters in Node.)
const [PACKED, SCALES, OUT, ROWS_M, WIDTH] = [0, 1, 2, 3, 4];
const [ROW, END, SRC, DST] = [5, 6, 7, 8];
const [SCALE, CODES, WIDE] = [9, 10, 11];

function int4Body() {
  const interleave = Array.from({ length: 16 }, (_, i) => (i % 2 ? 16 : 0) + (i >> 1));
  // out[16 k ...]: four of the eight codes widened in WIDE (its low or high four), scaled
  const store = (k, high) => [
    ...op.get(DST), ...op.i32(16 * k), ...op.add,
    ...op.get(WIDE), ...(high ? op.i32x4FromHigh : op.i32x4FromLow),
    ...op.f32x4FromI32x4, ...op.get(SCALE), ...op.f32x4Mul, ...op.v128Store];
  const code = [
    ...op.i32(0), ...op.set(ROW),
    ...op.get(PACKED), ...op.set(SRC),
    ...op.get(OUT), ...op.set(DST),
    ...loop([...op.get(ROW), ...op.get(ROWS_M), ...op.geU], [
      ...op.get(SCALES), ...op.get(ROW), ...op.i32(2), ...op.shl, ...op.add, ...op.f32Load,
      ...op.f32x4Splat, ...op.set(SCALE),
      ...op.get(SRC), ...op.get(WIDTH), ...op.add, ...op.set(END),
      ...loop([...op.get(SRC), ...op.get(END), ...op.geU], [
        ...op.get(SRC), ...op.v128Load64Zero, ...op.set(CODES),
        ...op.get(CODES), ...op.i32(15), ...op.i8x16Splat, ...op.v128And,
        ...op.get(CODES), ...op.i32(4), ...op.i8x16ShrU,
        ...op.shuffle(interleave),
        ...op.i32(8), ...op.i8x16Splat, ...op.i8x16Sub, ...op.set(CODES),
        ...op.get(CODES), ...op.i16x8FromLow, ...op.set(WIDE),
        ...store(0, false), ...store(1, true),
        ...op.get(CODES), ...op.i16x8FromHigh, ...op.set(WIDE),
        ...store(2, false), ...store(3, true),
        ...op.get(SRC), ...op.i32(8), ...op.add, ...op.set(SRC),
        ...op.get(DST), ...op.i32(64), ...op.add, ...op.set(DST),
      ]),
      ...op.get(ROW), ...op.i32(1), ...op.add, ...op.set(ROW),
    ]),
  ];
  return functionBody(SCALE - ROW, 3, code);
}

export const TIMES_TRANSPOSED = "lorann_times_transposed";
export const INT4_ROWS = "lorann_int4_rows";

// The module's bytes: a side module (its "dylink.0" section asks for no memory
// or table of its own) importing the memory it works on.
export function kernelModule() {
  const memInfo = [1, ...uleb(4), 0, 0, 0, 0];  // memory size, alignment, table size, alignment
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(0, [...name("dylink.0"), ...memInfo]),
    ...section(1, vector([[0x60, ...vector(new Array(6).fill([I32])), 0],
                          [0x60, ...vector(new Array(5).fill([I32])), 0]])),
    ...section(2, vector([[...name("env"), ...name("memory"), 0x02, 0x00, 0x00]])),
    ...section(3, vector([[0], [1]])),
    ...section(7, vector([[...name(TIMES_TRANSPOSED), 0x00, 0],
                          [...name(INT4_ROWS), 0x00, 1]])),
    ...section(10, vector([productsBody(), int4Body()])),
  ]);
}

// Load the kernels into a running Pyodide and offer them to Python as the
// module `lorann_products` (`times_transposed(a, b, c, m, n, k)` and
// `int4_rows(packed, scales, out, m, w)`, addresses in Pyodide's memory).
// Returns false, offering nothing, where WebAssembly SIMD or Pyodide's
// side-module loader is missing. (That loader, the one Pyodide loads NumPy's
// extension modules with, is Emscripten's and not a public API: the runtime
// is pinned, and tests/test_browser.py fails if it stops loading.)
export function offerProducts(pyodide) {
  const bytes = kernelModule();
  const loader = pyodide._module && pyodide._module.loadWebAssemblyModule;
  if (!loader || !WebAssembly.validate(bytes)) return false;
  let kernels;
  try {
    kernels = loader(bytes, { loadAsync: false, nodelete: true }, "lorann-products.so", {});
  } catch {
    return false;
  }
  if ([TIMES_TRANSPOSED, INT4_ROWS].some((name) => typeof kernels[name] !== "function")) {
    return false;
  }
  pyodide.registerJsModule("lorann_products", { times_transposed: kernels[TIMES_TRANSPOSED],
                                                int4_rows: kernels[INT4_ROWS] });
  return true;
}
