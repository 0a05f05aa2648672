// WGSL fragments shared by the kernels: workgroup reductions, the RoPE rotation and bfloat16 rounding.

/**
 * `sumAll(lid, v)` and `maxAll(lid, v)` over a workgroup of `size` invocations (a power of two), through a
 * `red` array in workgroup memory. Every invocation must call them (they hold barriers) and gets the result.
 */
export function reductions(size: number): string {
  return `
var<workgroup> red: array<f32, ${size}>;
fn sumAll(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${size / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}
fn maxAll(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${size / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let top = red[0];
  workgroupBarrier();
  return top;
}`;
}

/**
 * RoPE in Hugging Face's rotate_half layout for a head of HD values, from a `rope` table [2, params.ropeRows, HD]
 * holding cos then sin. `ropeFwd` rotates element d of x (partner = x[d ± HD/2]); `ropeBwd` is its transpose,
 * the gradient of the unrotated input given the gradient of the rotated one.
 */
export function ropeFns(hd: number): string {
  return `
const HD = ${hd}u;
const HALF = ${hd / 2}u;
fn partner(d: u32) -> u32 { return select(d - HALF, d + HALF, d < HALF); }
fn ropeCos(pos: u32, d: u32) -> f32 { return rope[pos * HD + d]; }
fn ropeSin(pos: u32, d: u32) -> f32 { return rope[(params.ropeRows + pos) * HD + d]; }
fn ropeFwd(pos: u32, d: u32, x: f32, xp: f32) -> f32 {
  let rot = select(xp, -xp, d < HALF);
  return x * ropeCos(pos, d) + rot * ropeSin(pos, d);
}
fn ropeBwd(pos: u32, d: u32, g: f32, gp: f32) -> f32 {
  let p = partner(d);
  let back = select(-gp, gp, d < HALF) * ropeSin(pos, p);
  return g * ropeCos(pos, d) + back;
}`;
}

/**
 * Round-to-nearest-even to bfloat16 (kept in an f32), as torch's `.to(torch.bfloat16)`: NaN stays NaN, values
 * that round past the largest bfloat16 become infinities.
 */
export const BF16_ROUND = `
fn roundBf16(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return x; }
  let rounded = bits + 0x7fffu + ((bits >> 16u) & 1u);
  return bitcast<f32>(rounded & 0xffff0000u);
}`;
