// Runs a body with one environment variable set, and puts the variable back as it was (set or unset) afterwards.

export async function withEnv<T>(name: string, value: string, body: () => Promise<T>): Promise<T> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}
