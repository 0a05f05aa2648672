// An in-memory writable stream, to run `main()` of the CLI in-process and read what it printed.
import { Writable } from 'node:stream';

export class Capture extends Writable {
  text = '';
  isTTY = false;

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (error?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }
}
