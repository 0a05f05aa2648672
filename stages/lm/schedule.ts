// Learning-rate schedule: linear warmup then linear decay to zero, as transformers' get_linear_schedule_with_warmup.

/**
 * Learning rate for the update that follows `step` completed updates (0-based: the first update uses step 0).
 * Warmup rises linearly from 0 to `baseLr` over `warmupSteps`, then the rate falls linearly to 0 at `totalSteps`.
 */
export function linearScheduleLr(baseLr: number, step: number, totalSteps: number, warmupSteps = 0): number {
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new Error(`linear schedule: total steps must be a whole number >= 1, got ${totalSteps}`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new Error(`linear schedule: warmup steps must be a whole number >= 0, got ${warmupSteps}`);
  // LambdaLR multiplies the base rate by the factor, in this order.
  if (step < warmupSteps) return baseLr * (step / Math.max(1, warmupSteps));
  return baseLr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
}
