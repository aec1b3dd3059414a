// experiment: lanes map to consecutive columns (sequential B loads), A broadcast
export function expWGSL(TM: number, TN: number, WGX: number, WGY: number): string {
  const rows = [...Array(TM).keys()], cols = [...Array(TN).keys()];
  return `
struct Dims { M: u32, N: u32, K: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(${WGX}, ${WGY})
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let nb = wg.x * ${WGX * TN}u + lid.x;
  let m0 = (wg.y * ${WGY}u + lid.y) * ${TM}u;
  let K4 = dims.K / 4u;
${rows.map(i => cols.map(j => `  var c${i}_${j} = 0.0;`).join(' ')).join('\n')}
${rows.map(i => `  let ra${i} = min(m0 + ${i}u, dims.M - 1u) * K4;`).join('\n')}
${cols.map(j => `  let n${j} = min(nb + ${j * WGX}u, dims.N - 1u);`).join('\n')}
  for (var k4 = 0u; k4 < K4; k4++) {
${rows.map(i => `    let a${i} = A[ra${i} + k4];`).join('\n')}
    let kb = k4 * 4u * dims.N;
${[0,1,2,3].map(q => cols.map(j => `    let b${q}_${j} = B[kb + ${q}u * dims.N + n${j}];`).join(' ')).join('\n')}
${rows.map(i => cols.map(j => `    c${i}_${j} += a${i}.x * b0_${j} + a${i}.y * b1_${j} + a${i}.z * b2_${j} + a${i}.w * b3_${j};`).join('\n')).join('\n')}
  }
${rows.map(i => cols.map(j => `  if (m0 + ${i}u < dims.M && nb + ${j * WGX}u < dims.N) { C[(m0 + ${i}u) * dims.N + nb + ${j * WGX}u] = c${i}_${j}; }`).join('\n')).join('\n')}
}`;
}
