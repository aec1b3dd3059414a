import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { MAX_WORKGROUPS_PER_DIM } from './common';

/**
 * Implicit-GEMM convolution: the register-tiled matmul of matmul.wgsl.ts with one operand
 * gathered from an NCHW image on the fly instead of read from a matrix.
 *
 * Everything is said in the terms of one Conv2d: an image I (batch, Ci, Hi, Wi), a weight
 * (Co, Ci, kh, kw) as PyTorch stores it, and an image O (batch, Co, Ho, Wo), joined by
 *   O[b, co, oy, ox] ↔ I[b, ci, oy·stride − pad + ky, ox·stride − pad + kx]   (taps outside I are 0).
 * Three products follow that join, and they are all a convolution layer needs:
 *   down    O = W ⋆ I    rows co, columns (b, oy, ox), K (ci, ky, kx)
 *   up      I = Wᵀ ⋆ O   rows ci, columns (b, iy, ix), K (co, ky, kx); a tap counts when
 *                        iy + pad − ky is a multiple of the stride and lands inside O
 *   weight  W = O ⋆ I    rows co, columns (ci, ky, kx), K (b, oy, ox); rowSum = Σ O per co
 * Conv2d's forward is `down`, its dX `up`, its dW `weight` (O = dY, I = X). ConvTranspose2d
 * with weight (in, out, kh, kw) is the same join read the other way (Co = its in, Ci = its out,
 * O its small input, I its large output): its forward is `up`, its dX `down`, its dW `weight`
 * with O = X and I = dY, already in its (in, out, kh, kw) layout. Its bias gradient sums the
 * large side, which no row of these products covers: channel_sum below does it.
 *
 * Tiling as the matmul's: an invocation owns tileM rows × tileN columns in named registers, its
 * columns strided by the workgroup's width so neighbouring invocations gather neighbouring
 * pixels (contiguous along W in NCHW) and store neighbouring outputs, while every invocation of
 * a row reads the same weights (a broadcast). No workgroup memory on the main path: on
 * SwiftShader it is many times slower than registers. The K loop is nested with the taps (ky, kx)
 * or pixels (oy, ox) outside and the channels or images inside: each column's bounds check and
 * address are worked out once per tap, and the innermost loop only loads (a fixed stride apart)
 * and multiplies, a tap outside the image reading an in-range 0-weighted element (select).
 *
 * A down product with a kernel 4 taps wide (tapRows) runs rows of taps outside and channels
 * inside, reading a row of 4 weights as one vec4 and 4 pixels per column, each column's x bounds
 * checked once per product: a quarter of the weight loads (on SwiftShader, where every load is
 * a per-lane gather, about 1.6× faster on the preset's products with one input channel, and
 * from even to 1.8× on its 32-channel ones). The same on the up product (2 of a row's 4 taps
 * per phase at stride 2) was slower there, so it keeps scalar taps.
 *
 * The up product runs by stride phase: its column blocks are drawn from the pixels with one
 * (iy + pad) mod s and (ix + pad) mod s, the phase folded into the workgroup's y, so a whole
 * workgroup takes the same taps (ky ≡ that phase) and skips the other (s² − 1)/s² of them
 * without testing each one.
 *
 * `slices` > 1 (products with too few outputs to fill a GPU, the small weight gradients) splits
 * the innermost K loop among that many invocations of a workgroup, whose partial sums meet in
 * workgroup memory and are added in a fixed order by slice 0.
 *
 * Column blocks beyond 65,535 workgroups continue along z (convWorkgroups), so any batch fits.
 */
export type ConvProduct = 'down' | 'up' | 'weight';

/** An activation as the epilogue applies it: the forward (on the output) or its backward mask. */
export type ConvActivation = 'none' | 'relu' | 'leakyRelu';

/**
 * How a product is launched: tileM×tileN outputs per invocation, K split `slices` ways, and
 * wgY rows of invocations per workgroup (the rest of its invocations lie along the columns).
 */
export interface ConvTile {
  tileM: number;
  tileN: number;
  slices: number;
  wgY: number;
}

export interface ConvOptions extends ConvTile {
  product: ConvProduct;
  /** dst += bias[row] (a forward). */
  bias: boolean;
  /** The forward activation after the bias: ReLU, or LeakyReLU with the uniform's slope. */
  activation: ConvActivation;
  /**
   * The backward of the activation that produced `mask` (the image dst is the gradient of):
   * dst ·= 1 where mask > 0, else 0 (ReLU) or the slope (LeakyReLU).
   */
  mask: ConvActivation;
  /** Also write rowSum[row] = Σ_K lhs(row, k): the bias gradient when lhs is dY (weight product). */
  rowSum: boolean;
  /**
   * The stride, compiled in rather than read from the uniform: the up product divides by it in
   * its tap loops, and SwiftShader's compiler took minutes over a tile with a division by a
   * uniform there (with a constant, the division is a shift, or nothing at stride 1).
   */
  stride: number;
  /**
   * The kernel is 4 taps wide (kw = 4): the down product reads a row of taps of the weight as
   * one vec4 (the weight binding is then an array of vec4, so its offset and size are whole
   * vec4s, as every weight piece of kh·4 taps is).
   */
  tapRows?: boolean;
}

/** The join of one Conv2d (see above). All sizes ≥ 1; `slope` is LeakyReLU's, for its epilogues. */
export interface ConvGeometry {
  batch: number;
  Ci: number;
  Hi: number;
  Wi: number;
  Co: number;
  Ho: number;
  Wo: number;
  kh: number;
  kw: number;
  stride: number;
  pad: number;
}

/** Invocations per workgroup without slices; with them, CONV_SPLIT_INVOCATIONS shared by the slices. */
export const CONV_LANES = 64;
export const CONV_SPLIT_INVOCATIONS = 256;
/** WebGPU's guaranteed workgroup memory, which bounds the split-K partials. */
const WORKGROUP_BYTES = 16384;

/** Rows, columns and depth (K) of a product. */
export function convProductShape(product: ConvProduct, g: ConvGeometry): { rows: number; cols: number; K: number } {
  const taps = g.kh * g.kw;
  if (product === 'down') return { rows: g.Co, cols: g.batch * g.Ho * g.Wo, K: g.Ci * taps };
  if (product === 'up') return { rows: g.Ci, cols: g.batch * g.Hi * g.Wi, K: g.Co * taps };
  return { rows: g.Co, cols: g.Ci * taps, K: g.batch * g.Ho * g.Wo };
}

/** Invocations per workgroup and slice: wgX·wgY. */
export function convLanes(slices: number): number {
  return slices > 1 ? CONV_SPLIT_INVOCATIONS / slices : CONV_LANES;
}

/** The rows of invocations a tile wants for `rows` rows: a power of two covering them, at most 8. */
export function convRowsOfInvocations(tileM: number, slices: number, rows: number): number {
  let wgY = 1;
  while (wgY < 8 && wgY < convLanes(slices) && wgY * tileM < rows) wgY *= 2;
  return wgY;
}

/** Workgroups of a launch; column blocks past 65,535 fold into z. */
export function convWorkgroups(o: ConvTile & { product: ConvProduct }, g: ConvGeometry): [number, number, number] {
  const { rows, cols } = convProductShape(o.product, g);
  const wgX = convLanes(o.slices) / o.wgY;
  // up: each of the stride² phases has its own row of workgroups, as wide as the largest phase.
  const phases = o.product === 'up' ? g.stride * g.stride : 1;
  const phaseCols = o.product === 'up' ? g.batch * Math.ceil(g.Hi / g.stride) * Math.ceil(g.Wi / g.stride) : cols;
  const blocks = Math.ceil(phaseCols / (wgX * o.tileN));
  const y = Math.ceil(rows / (o.wgY * o.tileM)) * phases;
  const z = Math.ceil(blocks / MAX_WORKGROUPS_PER_DIM);
  if (y > MAX_WORKGROUPS_PER_DIM || z > MAX_WORKGROUPS_PER_DIM)
    throw new Error(`conv: ${rows}×${cols} outputs exceed one dispatch`);
  return [Math.ceil(blocks / z), y, z];
}

/** Invocations a launch runs (what the hardware plan counts). */
export function convInvocations(o: ConvTile & { product: ConvProduct }, g: ConvGeometry): number {
  const [x, y, z] = convWorkgroups(o, g);
  return x * y * z * convLanes(o.slices) * o.slices;
}

/** Binding order: 0 dims (uniform), 1 lhs, 2 src, 3 dst, then bias, mask, rowSum as enabled. */
export function convBindings(o: ConvOptions): ('uniform' | 'read' | 'storage')[] {
  const b: ('uniform' | 'read' | 'storage')[] = ['uniform', 'read', 'read', 'storage'];
  if (o.bias) b.push('read');
  if (o.mask !== 'none') b.push('read');
  if (o.rowSum) b.push('storage');
  return b;
}

/** The uniform: the geometry as u32s, then LeakyReLU's slope as f32 (48 bytes). */
export function convUniform(g: ConvGeometry, slope: number): Uint8Array {
  const data = new ArrayBuffer(48);
  new Uint32Array(data, 0, 11).set([g.batch, g.Ci, g.Hi, g.Wi, g.Co, g.Ho, g.Wo, g.kh, g.kw, g.stride, g.pad]);
  new Float32Array(data, 44, 1)[0] = slope;
  return new Uint8Array(data);
}

/**
 * Columns per invocation at most: each column carries its own bounds check, address and load,
 * and SwiftShader's shader compiler took seconds at 4 columns and did not finish in minutes at 8
 * when those were all in the innermost loop (rows, which only add weight loads, are cheap).
 */
export const CONV_MAX_TILE_N = 4;

export function convWGSL(o: ConvOptions): string {
  if (!(o.tileM >= 1 && o.tileM <= 8 && o.tileN >= 1 && o.tileN <= CONV_MAX_TILE_N))
    throw new Error(
      `conv: tiles are 1…8 rows × 1…${CONV_MAX_TILE_N} columns per invocation, got ${o.tileM}×${o.tileN}`,
    );
  if (!(o.slices >= 1 && o.slices <= 16 && CONV_SPLIT_INVOCATIONS % o.slices === 0))
    throw new Error(`conv: slices must divide ${CONV_SPLIT_INVOCATIONS} and be at most 16, got ${o.slices}`);
  const lanes = convLanes(o.slices);
  if (!(o.wgY >= 1 && lanes % o.wgY === 0))
    throw new Error(`conv: wgY must divide the ${lanes} invocations of a slice, got ${o.wgY}`);
  if (o.rowSum && o.product !== 'weight') throw new Error('conv: rowSum is the weight product’s bias gradient');
  if (o.activation !== 'none' && o.mask !== 'none')
    throw new Error('conv: a forward activation and a backward mask exclude each other');
  if (!(Number.isInteger(o.stride) && o.stride >= 1))
    throw new Error(`conv: stride must be an integer ≥ 1, got ${o.stride}`);
  const wgX = lanes / o.wgY;
  const split = o.slices > 1;
  const up = o.product === 'up';
  // Per invocation: the outputs, then the row sums (split K hands both through workgroup memory).
  const slots = o.tileM * o.tileN + (o.rowSum ? o.tileM : 0);
  if (split && CONV_SPLIT_INVOCATIONS * slots * 4 > WORKGROUP_BYTES)
    throw new Error(`conv: a ${o.tileM}×${o.tileN} tile is too large to split K`);

  // The tile is unrolled here, not looped over in WGSL: compilers (SwiftShader's above all) keep
  // named scalars in registers but a dynamically indexed array in memory.
  const rows = Array.from({ length: o.tileM }, (_, i) => i);
  const cols = Array.from({ length: o.tileN }, (_, j) => j);
  const lines = (xs: number[], f: (x: number) => string, indent: string) => xs.map((x) => indent + f(x)).join('\n');
  const each = (f: (i: number, j: number) => string, indent: string) =>
    rows.map((i) => lines(cols, (j) => f(i, j), indent)).join('\n');

  // Each product: how a column decodes (and at{j}, where its row 0 lands in dst), then the K
  // loop's three levels (outer, middle, inner), loading the operand `v{j}` and the weight `a{i}`
  // in the innermost.
  let decode: string;
  let loops: string;
  if (o.product === 'down' && o.tapRows) {
    decode = lines(
      cols,
      (j) => `let b${j} = c${j} / (dims.Ho * dims.Wo);
  let p${j} = c${j} % (dims.Ho * dims.Wo);
  let y0_${j} = i32((p${j} / dims.Wo) * STRIDE) - i32(dims.pad);
  let x0_${j} = i32((p${j} % dims.Wo) * STRIDE) - i32(dims.pad);
  let base${j} = b${j} * dims.Ci * dims.Hi * dims.Wi;
  let at${j} = b${j} * dims.Co * dims.Ho * dims.Wo + p${j};`,
      '  ',
    );
    const taps = [0, 1, 2, 3];
    const tapLines = (f: (j: number, t: number) => string, indent: string) =>
      cols.map((j) => lines(taps, (t) => f(j, t), indent)).join('\n');
    // Rows of taps outside, channels inside: a row of 4 taps of the weight is one vec4, whose
    // columns' bounds along x were checked once for the whole product.
    loops = `  let taps = dims.kh * 4u;
  let plane = dims.Hi * dims.Wi;
${tapLines((j, t) => `let xOk${j}_${t} = x0_${j} + ${t} >= 0 && x0_${j} + ${t} < i32(dims.Wi);`, '  ')}
  for (var ky = 0u; ky < dims.kh; ky++) {
${lines(rows, (i) => `let w${i} = r${i} * dims.Ci * dims.kh + ky;`, '    ')}
${lines(
  cols,
  (j) => `let iy${j} = y0_${j} + i32(ky);
    let rowOk${j} = iy${j} >= 0 && iy${j} < i32(dims.Hi);
    let rowAt${j} = i32(base${j} + u32(max(iy${j}, 0)) * dims.Wi) + x0_${j};`,
  '    ',
)}
${tapLines(
  (j, t) => `let ok${j}_${t} = rowOk${j} && xOk${j}_${t};
    let tapAt${j}_${t} = select(0u, u32(rowAt${j} + ${t}), ok${j}_${t});`,
  '    ',
)}
    var wAt = slice * dims.kh;
    var iAt = slice * plane;
    for (var ci = slice; ci < dims.Ci; ci += ${o.slices}u) {
${lines(rows, (i) => `let a${i} = lhs[w${i} + wAt];`, '      ')}
${tapLines((j, t) => `let v${j}_${t} = select(0.0, src[tapAt${j}_${t} + iAt], ok${j}_${t});`, '      ')}
${each((i, j) => `c${i}_${j} += a${i}.x * v${j}_0 + a${i}.y * v${j}_1 + a${i}.z * v${j}_2 + a${i}.w * v${j}_3;`, '      ')}
      wAt += ${o.slices}u * dims.kh;
      iAt += ${o.slices}u * plane;
    }
  }`;
  } else if (o.product === 'down') {
    decode = lines(
      cols,
      (j) => `let b${j} = c${j} / (dims.Ho * dims.Wo);
  let p${j} = c${j} % (dims.Ho * dims.Wo);
  let y0_${j} = i32((p${j} / dims.Wo) * STRIDE) - i32(dims.pad);
  let x0_${j} = i32((p${j} % dims.Wo) * STRIDE) - i32(dims.pad);
  let base${j} = b${j} * dims.Ci * dims.Hi * dims.Wi;
  let at${j} = b${j} * dims.Co * dims.Ho * dims.Wo + p${j};`,
      '  ',
    );
    // Taps outside, channels inside (as up's, below).
    loops = `  let K = dims.Ci * dims.kh * dims.kw;
  let taps = dims.kh * dims.kw;
  let plane = dims.Hi * dims.Wi;
  for (var ky = 0u; ky < dims.kh; ky++) {
${lines(
  cols,
  (j) => `let iy${j} = y0_${j} + i32(ky);
    let rowOk${j} = iy${j} >= 0 && iy${j} < i32(dims.Hi);
    let rowAt${j} = base${j} + u32(max(iy${j}, 0)) * dims.Wi;`,
  '    ',
)}
    for (var kx = 0u; kx < dims.kw; kx++) {
${lines(rows, (i) => `let w${i} = r${i} * K + ky * dims.kw + kx;`, '      ')}
${lines(
  cols,
  (j) => `let ix${j} = x0_${j} + i32(kx);
      let ok${j} = rowOk${j} && ix${j} >= 0 && ix${j} < i32(dims.Wi);
      let tapAt${j} = select(0u, rowAt${j} + u32(max(ix${j}, 0)), ok${j});`,
  '      ',
)}
      var wAt = slice * taps;
      var iAt = slice * plane;
      for (var ci = slice; ci < dims.Ci; ci += ${o.slices}u) {
${lines(rows, (i) => `let a${i} = lhs[w${i} + wAt];`, '        ')}
${lines(cols, (j) => `let v${j} = select(0.0, src[tapAt${j} + iAt], ok${j});`, '        ')}
${each((i, j) => `c${i}_${j} += a${i} * v${j};`, '        ')}
        wAt += ${o.slices}u * taps;
        iAt += ${o.slices}u * plane;
      }
    }
  }`;
  } else if (o.product === 'up') {
    // Column c of the workgroup's phase (py, px) is pixel (b, iy0 + jy·s, ix0 + jx·s); its taps
    // ky = py, py + s, … read O's row qy − t (t = (ky − py)/s), where qy = (iy + pad − py)/s.
    decode = lines(
      cols,
      (j) => `let b${j} = c${j} / phasePlane;
  let p${j} = c${j} % phasePlane;
  let jy${j} = p${j} / rowW;
  let jx${j} = p${j} % rowW;
  let qy${j} = i32(qyStart + jy${j});
  let qx${j} = i32(qxStart + jx${j});
  let base${j} = b${j} * dims.Co * dims.Ho * dims.Wo;
  let at${j} = b${j} * dims.Ci * dims.Hi * dims.Wi + (iy0 + jy${j} * STRIDE) * dims.Wi + ix0 + jx${j} * STRIDE;`,
      '  ',
    );
    // The channel loop is innermost: a tap's bounds check and address are worked out once for
    // every channel, whose loads are then a fixed stride apart (a plane of O, a slab of weights).
    loops = `  let taps = dims.kh * dims.kw;
  let plane = dims.Ho * dims.Wo;
  let slab = dims.Ci * taps;
  for (var ky = py; ky < dims.kh; ky += STRIDE) {
    let ty = i32((ky - py) / STRIDE);
${lines(
  cols,
  (j) => `let oy${j} = qy${j} - ty;
    let rowOk${j} = oy${j} >= 0 && oy${j} < i32(dims.Ho);
    let rowAt${j} = base${j} + u32(max(oy${j}, 0)) * dims.Wo;`,
  '    ',
)}
    for (var kx = px; kx < dims.kw; kx += STRIDE) {
      let tx = i32((kx - px) / STRIDE);
${lines(rows, (i) => `let w${i} = r${i} * taps + ky * dims.kw + kx;`, '      ')}
${lines(
  cols,
  (j) => `let ox${j} = qx${j} - tx;
      let ok${j} = rowOk${j} && ox${j} >= 0 && ox${j} < i32(dims.Wo);
      // A tap outside O reads channel co's first pixel of image 0 (in range) and drops it.
      let tapAt${j} = select(0u, rowAt${j} + u32(max(ox${j}, 0)), ok${j});`,
  '      ',
)}
      var wAt = slice * slab;
      var oAt = slice * plane;
      for (var co = slice; co < dims.Co; co += ${o.slices}u) {
${lines(rows, (i) => `let a${i} = lhs[w${i} + wAt];`, '        ')}
${lines(cols, (j) => `let v${j} = select(0.0, src[tapAt${j} + oAt], ok${j});`, '        ')}
${each((i, j) => `c${i}_${j} += a${i} * v${j};`, '        ')}
        wAt += ${o.slices}u * slab;
        oAt += ${o.slices}u * plane;
      }
    }
  }`;
  } else {
    decode = lines(
      cols,
      (j) => `let ci${j} = c${j} / (dims.kh * dims.kw);
  let ky${j} = (c${j} / dims.kw) % dims.kh;
  let kx${j} = c${j} % dims.kw;
  let at${j} = c${j};`,
      '  ',
    );
    // Pixels outside, the batch inside (as up's, above).
    loops = `  let oImage = dims.Co * dims.Ho * dims.Wo;
  let iImage = dims.Ci * dims.Hi * dims.Wi;
  for (var oy = 0u; oy < dims.Ho; oy++) {
${lines(
  cols,
  (j) => `let iy${j} = i32(oy * STRIDE + ky${j}) - i32(dims.pad);
    let rowOk${j} = iy${j} >= 0 && iy${j} < i32(dims.Hi);
    let rowAt${j} = (ci${j} * dims.Hi + u32(max(iy${j}, 0))) * dims.Wi;`,
  '    ',
)}
    for (var ox = 0u; ox < dims.Wo; ox++) {
${lines(rows, (i) => `let aAt${i} = (r${i} * dims.Ho + oy) * dims.Wo + ox;`, '      ')}
${lines(
  cols,
  (j) => `let ix${j} = i32(ox * STRIDE + kx${j}) - i32(dims.pad);
      let ok${j} = rowOk${j} && ix${j} >= 0 && ix${j} < i32(dims.Wi);
      let tapAt${j} = select(0u, rowAt${j} + u32(max(ix${j}, 0)), ok${j});`,
  '      ',
)}
      var oAt = slice * oImage;
      var iAt = slice * iImage;
      for (var b = slice; b < dims.batch; b += ${o.slices}u) {
${lines(rows, (i) => `let a${i} = lhs[aAt${i} + oAt];`, '        ')}
${lines(cols, (j) => `let v${j} = select(0.0, src[tapAt${j} + iAt], ok${j});`, '        ')}
${each((i, j) => `c${i}_${j} += a${i} * v${j};`, '        ')}
${o.rowSum ? lines(rows, (i) => `sum${i} += a${i};`, '        ') : ''}
        oAt += ${o.slices}u * oImage;
        iAt += ${o.slices}u * iImage;
      }
    }
  }`;
  }

  const shapeOf = {
    down: ['dims.Co', 'dims.batch * dims.Ho * dims.Wo'],
    up: ['dims.Ci', 'dims.batch * dims.Hi * dims.Wi'],
    weight: ['dims.Co', 'dims.Ci * dims.kh * dims.kw'],
  }[o.product];
  // Where output (row, column) lives in dst: the decode's at{j} (row 0's) plus r rows of this
  // step; NCHW images for down and up, (Co, Ci·kh·kw) for weight.
  const rowStep = { down: 'dims.Ho * dims.Wo', up: 'dims.Hi * dims.Wi', weight: 'colCount()' }[o.product];
  const slot = (i: number, j: number) => i * o.tileN + j;
  const sumSlot = (i: number) => o.tileM * o.tileN + i;

  let binding = 4;
  const biasBinding = o.bias ? binding++ : -1;
  const maskBinding = o.mask !== 'none' ? binding++ : -1;
  const rowSumBinding = o.rowSum ? binding : -1;

  return wgsl`struct Dims { batch: u32, Ci: u32, Hi: u32, Wi: u32, Co: u32, Ho: u32, Wo: u32, kh: u32, kw: u32, stride: u32, pad: u32, slope: f32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> lhs: array<${o.product === 'down' && o.tapRows ? 'vec4<f32>' : 'f32'}>;  // ${o.product === 'weight' ? 'O (batch, Co, Ho, Wo)' : 'the weight (Co, Ci, kh, kw)'}
@group(0) @binding(2) var<storage, read> src: array<f32>;  // ${o.product === 'up' ? 'O (batch, Co, Ho, Wo)' : 'I (batch, Ci, Hi, Wi)'}
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // ${{ down: 'O', up: 'I', weight: 'the weight' }[o.product]}
#if ${o.bias}
@group(0) @binding(${biasBinding}) var<storage, read> bias: array<f32>;
#endif
#if ${o.mask !== 'none'}
@group(0) @binding(${maskBinding}) var<storage, read> mask: array<f32>;  // the activation's output, dst's shape
#endif
#if ${o.rowSum}
@group(0) @binding(${rowSumBinding}) var<storage, read_write> rowSum: array<f32>;
#endif
#if ${split}
var<workgroup> partial: array<f32, ${CONV_SPLIT_INVOCATIONS * slots}>;
#endif

const STRIDE = ${o.stride}u;
#if ${up}
const PHASES = ${o.stride * o.stride}u;
#endif

fn rowCount() -> u32 { return ${shapeOf[0]}; }
fn colCount() -> u32 { return ${shapeOf[1]}; }

// The epilogue for one output: bias, then the activation or its backward mask, then the store.
fn store(r: u32, inside: bool, at0: u32, acc: f32) {
  if (r >= rowCount() || !inside) { return; }
  let at = at0 + r * (${rowStep});
  var v = acc;
#if ${o.bias}
  v += bias[r];
#endif
#if ${o.activation === 'relu'}
  v = max(v, 0.0);
#elif ${o.activation === 'leakyRelu'}
  v = select(v * dims.slope, v, v > 0.0);
#endif
#if ${o.mask === 'relu'}
  v = select(0.0, v, mask[at] > 0.0);
#elif ${o.mask === 'leakyRelu'}
  v = select(v * dims.slope, v, mask[at] > 0.0);
#endif
  dst[at] = v;
}

@compute @workgroup_size(${lanes * o.slices})
fn conv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) index: u32) {
  let lane = index % ${lanes}u;
  let slice = index / ${lanes}u;
  let x = lane % ${wgX}u;
  let y = lane / ${wgX}u;
#if ${up}
  // The up product's columns come a stride phase (py, px) at a time, the phase folded into y:
  // pixels with (iy + pad) % s = py and (ix + pad) % s = px, which take the same taps
  // ky ≡ py, kx ≡ px (mod s) and no others. Phases of unequal size end at their own count.
  let phase = wg.y % PHASES;
  let rowBlock = wg.y / PHASES;
  let py = phase / STRIDE;
  let px = phase % STRIDE;
  // The phase's first pixel (iy0, ix0), its pixels per image (phaseH × phaseW), and qyStart, qxStart:
  // (iy0 + pad − py)/s, its O row for the tap ky = py, and column for kx = px.
  let iy0 = (py + STRIDE - dims.pad % STRIDE) % STRIDE;
  let ix0 = (px + STRIDE - dims.pad % STRIDE) % STRIDE;
  let phaseH = select(0u, (dims.Hi - iy0 + STRIDE - 1u) / STRIDE, iy0 < dims.Hi);
  let phaseW = select(0u, (dims.Wi - ix0 + STRIDE - 1u) / STRIDE, ix0 < dims.Wi);
  let qyStart = (iy0 + dims.pad - py) / STRIDE;
  let qxStart = (ix0 + dims.pad - px) / STRIDE;
  let columns = dims.batch * phaseH * phaseW;
  // Divisors for the decode, never 0 (an empty phase computes on column 0 and stores nothing).
  let phasePlane = max(phaseH * phaseW, 1u);
  let rowW = max(phaseW, 1u);
#else
  let rowBlock = wg.y;
  let columns = colCount();
#endif
  let row0 = (rowBlock * ${o.wgY}u + y) * ${o.tileM}u;
  let col0 = (wg.x + wg.z * groups.x) * ${wgX * o.tileN}u + x;
#if ${!split}
  if (row0 >= rowCount() || col0 >= columns) { return; }
#endif
  // Out-of-range rows and columns compute on the last valid one (or column 0 of an empty
  // phase); store() drops them.
${lines(rows, (i) => `let r${i} = min(row0 + ${i}u, rowCount() - 1u);`, '  ')}
${lines(cols, (j) => `let c${j} = min(col0 + ${j * wgX}u, max(columns, 1u) - 1u);`, '  ')}
${decode}
${each((i, j) => `var c${i}_${j} = 0.0;`, '  ')}
#if ${o.rowSum}
${lines(rows, (i) => `var sum${i} = 0.0;`, '  ')}
#endif
${loops}
#if ${split}
  // The slices' partial sums, added in slice order by slice 0.
  let mine = (slice * ${lanes}u + lane) * ${slots}u;
${each((i, j) => `partial[mine + ${slot(i, j)}u] = c${i}_${j};`, '  ')}
#if ${o.rowSum}
${lines(rows, (i) => `partial[mine + ${sumSlot(i)}u] = sum${i};`, '  ')}
#endif
  workgroupBarrier();
  if (slice != 0u) { return; }
  for (var s = 1u; s < ${o.slices}u; s++) {
    let theirs = (s * ${lanes}u + lane) * ${slots}u;
${each((i, j) => `c${i}_${j} += partial[theirs + ${slot(i, j)}u];`, '    ')}
#if ${o.rowSum}
${lines(rows, (i) => `sum${i} += partial[theirs + ${sumSlot(i)}u];`, '    ')}
#endif
  }
#endif
${each((i, j) => `store(row0 + ${i}u, col0 + ${j * wgX}u < columns, at${j}, c${i}_${j});`, '  ')}
#if ${o.rowSum}
  // Every column block summed the same rows; the first column's invocation writes them.
  if (col0 == 0u) {
${lines(rows, (i) => `if (row0 + ${i}u < rowCount()) { rowSum[row0 + ${i}u] = sum${i}; }`, '    ')}
  }
#endif
}
`;
}

/** Invocations of the channel sum's workgroup; one workgroup per channel. */
export const CHANNEL_SUM_WG = 64;

/**
 * out[c] = Σ_{b, p} image[b, c, p] for an NCHW image: ConvTranspose2d's bias gradient. One
 * workgroup per channel; each invocation sums a strided share of the (b, p) pairs, then a tree
 * in workgroup memory adds the shares in a fixed order.
 */
export function channelSumWGSL(): string {
  return `struct Dims { batch: u32, C: u32, plane: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> image: array<f32>;  // (batch, C, plane)
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // (C)
var<workgroup> share: array<f32, ${CHANNEL_SUM_WG}>;

@compute @workgroup_size(${CHANNEL_SUM_WG})
fn channel_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let c = wg.x;
  var s = 0.0;
  for (var b = 0u; b < dims.batch; b++) {
    let base = (b * dims.C + c) * dims.plane;
    for (var p = lane; p < dims.plane; p += ${CHANNEL_SUM_WG}u) { s += image[base + p]; }
  }
  share[lane] = s;
  workgroupBarrier();
  for (var half = ${CHANNEL_SUM_WG / 2}u; half > 0u; half /= 2u) {
    if (lane < half) { share[lane] += share[lane + half]; }
    workgroupBarrier();
  }
  if (lane == 0u) { out[c] = share[0]; }
}
`;
}

export const channelSumBindings: ('uniform' | 'read' | 'storage')[] = ['uniform', 'read', 'storage'];
