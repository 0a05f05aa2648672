import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './stages/lm/backend.ts';
await initBackend('wasm');
function best(f: () => void, n = 7) { let b = Infinity; for (let i = 0; i < n; i++) { const t = performance.now(); f(); b = Math.min(b, performance.now() - t); } return b; }
const shapes = process.argv.slice(2).map(s => s.split('x').map(Number));
for (const [m,k,n] of shapes) {
  const A = tf.randomNormal([m,k]) as tf.Tensor2D;
  const Bs = Array.from({length:8},()=>tf.randomNormal([k,n]) as tf.Tensor2D);
  let i = 0;
  const fresh = best(() => { tf.matMul(A, Bs[i++ % 8]!).dispose(); });
  const cached = best(() => { tf.matMul(A, Bs[0]!).dispose(); });
  const fl = 2*m*k*n/1e6;
  console.log(`${m}x${k}x${n}: fresh ${(fl/fresh).toFixed(1)} GF/s, cached ${(fl/cached).toFixed(1)} GF/s`);
}
