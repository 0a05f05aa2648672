// A minimal Language Server Protocol client for tests: JSON-RPC with Content-Length framing over a child's stdio.
import { spawn, type ChildProcess } from 'node:child_process';

interface Message {
  jsonrpc: '2.0';
  id?: number;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string };
}

export class LspClient {
  private buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, (m: Message) => void>();
  /** Notifications the server sent, in order. */
  readonly notifications: Message[] = [];
  private readonly waiters: { method: string; test: (p: unknown) => boolean; resolve: (p: unknown) => void }[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => this.receive(chunk));
    child.stderr!.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** Starts `command args…` and speaks to it over its stdin and stdout. */
  static start(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): LspClient {
    return new LspClient(spawn(command, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headerEnd = this.buffer.indexOf('\r\n\r\n');
      if (headerEnd < 0) return;
      const length = Number(/Content-Length: (\d+)/i.exec(this.buffer.subarray(0, headerEnd).toString())?.[1]);
      if (this.buffer.length < headerEnd + 4 + length) return;
      const body = this.buffer.subarray(headerEnd + 4, headerEnd + 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(headerEnd + 4 + length);
      const m = JSON.parse(body) as Message;
      if (m.id !== undefined && m.method === undefined) this.pending.get(m.id)?.(m);
      else if (m.id !== undefined) this.send({ jsonrpc: '2.0', id: m.id, result: null }); // server → client requests
      else {
        this.notifications.push(m);
        for (const w of [...this.waiters]) {
          if (w.method === m.method && w.test(m.params)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(m.params);
          }
        }
      }
    }
  }

  private send(m: Message): void {
    const body = Buffer.from(JSON.stringify(m), 'utf8');
    this.child.stdin!.write(`Content-Length: ${body.length}\r\n\r\n`);
    this.child.stdin!.write(body);
  }

  request<T>(method: string, params: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result as T)));
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  notify(method: string, params: unknown): void {
    this.send({ jsonrpc: '2.0', method, params });
  }

  /** The next notification of `method` whose params pass `test` (one already received counts). */
  waitFor<T>(method: string, test: (p: T) => boolean = () => true): Promise<T> {
    const seen = this.notifications.find((m) => m.method === method && test(m.params as T));
    if (seen) return Promise.resolve(seen.params as T);
    return new Promise((resolve) => this.waiters.push({ method, test: test as (p: unknown) => boolean, resolve: resolve as (p: unknown) => void }));
  }

  /** `shutdown`, then `exit`; resolves with the server's exit code. */
  async close(): Promise<number | null> {
    await this.request('shutdown', null);
    this.notify('exit', null);
    return this.exited;
  }
}
