/**
 * The float64 twin of shaders/philox.wgsl.ts. The engine itself draws its CPU-side noise from
 * the same generator, so the one copy lives in src/model/philox.ts and the tests find it here,
 * beside the other twins.
 */
export { normal, normals, philox4x32_10 } from '../model/philox';
