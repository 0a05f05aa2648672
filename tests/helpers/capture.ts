// An in-memory writable stream, and `main()` of the CLI run in-process with what it printed.
import { Writable } from 'node:stream';
import { main } from '../../runtime/cli.ts';

export class Capture extends Writable {
  text = '';
  isTTY = false;

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (error?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }
}

export interface Ran {
  code: number;
  out: string;
  err: string;
}

/**
 * `pausepipe ARGS…` in this process (the CLI's `main`), with what it printed. `tty` makes stderr an 80-column
 * terminal (the live progress block); `stdoutColumns` makes stdout a terminal that wide.
 */
export async function runMain(args: string[], opts: { tty?: boolean; stdoutColumns?: number } = {}): Promise<Ran> {
  const stdout = new Capture();
  const stderr = new Capture();
  if (opts.tty) Object.assign(stderr, { isTTY: true, columns: 80 });
  if (opts.stdoutColumns) Object.assign(stdout, { isTTY: true, columns: opts.stdoutColumns });
  const code = await main(args, { stdout, stderr });
  return { code, out: stdout.text, err: stderr.text };
}
