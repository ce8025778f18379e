// Matrix products with WebAssembly SIMD, for Python under Pyodide: NumPy there
// has no BLAS and no SIMD, and a query's embedding spent most of its time in
// the encoder's dense products (see kernels.py, which calls this module).
//
// The kernel is a WebAssembly module written out below instruction by
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
};

// `while (!(stop)) { body }`: stop and body are lists of instructions
function loop(stop, body) {
  return [0x02, 0x40, 0x03, 0x40, ...stop, ...op.brIf(1), ...body, ...op.br(0), 0x0b, 0x0b];
}

// -- the kernel ----------------------------------------------------------------

// lorann_times_transposed(a, b, c, m, n, k): c = a @ b.T for float32 C-order
// a (m, k), b (n, k) and c (m, n), k a multiple of 4. For each row of b (which
// stays in the first-level cache) four rows of a at a time, four lanes each:
// b streams from memory once. Each dot product adds lane by lane, then the
// four lanes: the same sums as NumPy's, in another order (the last bits of a
// float32 may differ, as they do between NumPy's platforms).
const [A, B, C, M, N, K] = [0, 1, 2, 3, 4, 5];
const [J, I, P, KB, ROW, A0, A1, A2, A3] = [6, 7, 8, 9, 10, 11, 12, 13, 14];
const [ACC0, ACC1, ACC2, ACC3, BV] = [15, 16, 17, 18, 19];

function storeSum(row, acc) {  // c[row * n + j] = the sum of acc's lanes
  return [
    ...op.get(C), ...op.get(row), ...op.get(N), ...op.mul, ...op.get(J), ...op.add,
    ...op.i32(2), ...op.shl, ...op.add,
    ...op.get(acc), ...op.lane(0), ...op.get(acc), ...op.lane(1), ...op.f32Add,
    ...op.get(acc), ...op.lane(2), ...op.get(acc), ...op.lane(3), ...op.f32Add,
    ...op.f32Add, ...op.f32Store,
  ];
}

function accumulate(acc, rowPointer) {  // acc += a's row (at rowPointer + p) * bv
  return [...op.get(acc), ...op.get(rowPointer), ...op.get(P), ...op.add, ...op.v128Load,
          ...op.get(BV), ...op.f32x4Mul, ...op.f32x4Add, ...op.set(acc)];
}

function dots(rows) {  // the dot products of rows of a (A0...) with b's row j
  const accs = [ACC0, ACC1, ACC2, ACC3].slice(0, rows);
  const pointers = [A0, A1, A2, A3].slice(0, rows);
  return [
    ...accs.flatMap((acc) => [...op.v128Zero, ...op.set(acc)]),
    ...op.i32(0), ...op.set(P),
    ...loop([...op.get(P), ...op.get(KB), ...op.geU], [
      ...op.get(ROW), ...op.get(P), ...op.add, ...op.v128Load, ...op.set(BV),
      ...accs.flatMap((acc, r) => accumulate(acc, pointers[r])),
      ...op.get(P), ...op.i32(16), ...op.add, ...op.set(P),
    ]),
  ];
}

function rowPointer(offset, target) {  // target = a + (i + offset) * kb
  return [...op.get(A), ...op.get(I), ...(offset ? [...op.i32(offset), ...op.add] : []),
          ...op.get(KB), ...op.mul, ...op.add, ...op.set(target)];
}

function kernelBody() {
  const row = (offset) => [...op.get(I), ...(offset ? [...op.i32(offset), ...op.add] : []),
                           ...op.set(P)];  // (P is free between dot products)
  const code = [
    ...op.get(K), ...op.i32(2), ...op.shl, ...op.set(KB),
    ...op.i32(0), ...op.set(J),
    ...loop([...op.get(J), ...op.get(N), ...op.geU], [
      ...op.get(B), ...op.get(J), ...op.get(KB), ...op.mul, ...op.add, ...op.set(ROW),
      ...op.i32(0), ...op.set(I),
      // four rows of a at a time
      ...loop([...op.get(I), ...op.i32(4), ...op.add, ...op.get(M), ...op.gtU], [
        ...rowPointer(0, A0), ...rowPointer(1, A1), ...rowPointer(2, A2), ...rowPointer(3, A3),
        ...dots(4),
        ...[0, 1, 2, 3].flatMap((r) => [...row(r), ...storeSum(P, [ACC0, ACC1, ACC2, ACC3][r])]),
        ...op.get(I), ...op.i32(4), ...op.add, ...op.set(I),
      ]),
      // the rest, one at a time
      ...loop([...op.get(I), ...op.get(M), ...op.geU], [
        ...rowPointer(0, A0), ...dots(1), ...row(0), ...storeSum(P, ACC0),
        ...op.get(I), ...op.i32(1), ...op.add, ...op.set(I),
      ]),
      ...op.get(J), ...op.i32(1), ...op.add, ...op.set(J),
    ]),
    0x0b,
  ];
  const locals = vector([[...uleb(9), I32], [...uleb(5), V128]]);
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

export const KERNEL = "lorann_times_transposed";

// The module's bytes: a side module (its "dylink.0" section asks for no memory
// or table of its own) importing the memory it works on.
export function kernelModule() {
  const memInfo = [1, ...uleb(4), 0, 0, 0, 0];  // memory size, alignment, table size, alignment
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(0, [...name("dylink.0"), ...memInfo]),
    ...section(1, vector([[0x60, ...vector(new Array(6).fill([I32])), 0]])),
    ...section(2, vector([[...name("env"), ...name("memory"), 0x02, 0x00, 0x00]])),
    ...section(3, vector([[0]])),
    ...section(7, vector([[...name(KERNEL), 0x00, 0]])),
    ...section(10, vector([kernelBody()])),
  ]);
}

// Load the kernel into a running Pyodide and offer it to Python as the module
// `lorann_products` (`times_transposed(a, b, c, m, n, k)`, addresses in
// Pyodide's memory). Returns false, offering nothing, where WebAssembly SIMD
// or Pyodide's side-module loader is missing.
export function offerProducts(pyodide) {
  const bytes = kernelModule();
  const loader = pyodide._module && pyodide._module.loadWebAssemblyModule;
  if (!loader || !WebAssembly.validate(bytes)) return false;
  let kernel;
  try {
    kernel = loader(bytes, { loadAsync: false, nodelete: true }, "lorann-products.so", {})[KERNEL];
  } catch {
    return false;
  }
  if (typeof kernel !== "function") return false;
  pyodide.registerJsModule("lorann_products", { times_transposed: kernel });
  return true;
}
