// The environment variables that choose GPU kernels, parsed in one place: by the kernels when they run, and by the
// command line before anything runs, so a typo fails at once instead of in the first model stage. No tfjs here.

type Env = Record<string, string | undefined>;

/** Each choice variable's values, its default first. */
export const GPU_CHOICES = {
  PAUSEPIPE_MATMUL: ['tfjs', 'wgsl'],
  PAUSEPIPE_ATTENTION: ['rows', 'lanes'],
  PAUSEPIPE_DECODE_GRAPH: ['on', 'off'],
  PAUSEPIPE_FROZEN_WEIGHTS: ['f32', 'bf16'],
} as const;

type ChoiceName = keyof typeof GPU_CHOICES;

/** A variable's text, with set-but-empty (or blank) counted as unset. */
function read(name: string, env: Env): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** The value of a choice variable: its default when unset; an error naming the variable and its values otherwise. */
export function gpuChoice<N extends ChoiceName>(name: N, env: Env = process.env): (typeof GPU_CHOICES)[N][number] {
  const values = GPU_CHOICES[name] as readonly string[];
  const v = read(name, env) ?? values[0]!;
  if (!values.includes(v)) throw new Error(`${name} must be ${values.slice(0, -1).join(', ')} or ${values.at(-1)}, got '${v}'`);
  return v as (typeof GPU_CHOICES)[N][number];
}

/** PAUSEPIPE_DECODE_LOOKAHEAD: decode steps queued ahead of the host's read, 0 to 64 (default 1). */
export function decodeLookahead(env: Env = process.env): number {
  const v = read('PAUSEPIPE_DECODE_LOOKAHEAD', env) ?? '1';
  if (!/^\d+$/.test(v) || Number(v) > 64) throw new Error(`PAUSEPIPE_DECODE_LOOKAHEAD must be a whole number from 0 to 64, got '${v}'`);
  return Number(v);
}

/** One GPU variable as `env` has it: its value (the default when unset), or what is wrong with it. */
export interface GpuSetting {
  name: string;
  value?: string;
  set: boolean;
  error?: string;
}

/** Every GPU variable of `env`, the choices first, then the lookahead. */
export function gpuSettings(env: Env = process.env): GpuSetting[] {
  const readers: Array<[string, () => string]> = [
    ...(Object.keys(GPU_CHOICES) as ChoiceName[]).map((name): [string, () => string] => [name, () => gpuChoice(name, env)]),
    ['PAUSEPIPE_DECODE_LOOKAHEAD', () => String(decodeLookahead(env))],
  ];
  return readers.map(([name, value]) => {
    const set = read(name, env) !== undefined;
    try {
      return { name, value: value(), set };
    } catch (err) {
      return { name, set, error: (err as Error).message };
    }
  });
}

/** What is wrong with the GPU variables of `env`, one message each (empty when all are fine or unset). */
export function gpuSettingErrors(env: Env = process.env): string[] {
  return gpuSettings(env).flatMap((s) => (s.error ? [s.error] : []));
}
