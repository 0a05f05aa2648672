// Following a job's log file on the shared filesystem: the lines appended since the last look, whole lines only.
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { errorCode } from '../../../cache/durable.ts';

const CHUNK_BYTES = 64 * 1024;

export class LogTail {
  private offset = 0;
  private partial = '';
  private readonly decoder = new StringDecoder('utf8');

  constructor(private readonly file: string, private readonly onLine: (line: string) => void) {}

  /**
   * Hands every complete line written since the last call to onLine. With `final` (the job has ended) a last line
   * without its newline is handed over too. A log that does not exist yet (a queued job) has no lines.
   */
  async read(final = false): Promise<void> {
    let handle;
    try {
      handle = await open(this.file, 'r');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    try {
      const buffer = Buffer.alloc(CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.take(this.decoder.write(buffer.subarray(0, bytesRead)));
      }
    } finally {
      await handle.close();
    }
    if (final) {
      this.take(this.decoder.end());
      if (this.partial !== '') this.onLine(this.partial);
      this.partial = '';
    }
  }

  private take(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  }
}
