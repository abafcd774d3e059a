/**
 * The transport half of a QMP peer, shared by client and server: it owns a byte stream,
 * hands the bytes to the subclass to frame, lets it stop and restart reading and see how much
 * it has written that the peer has not taken (its back-pressure), and keeps the first
 * background error (first one wins) for close() to report. It knows nothing of JSON (cf.
 * python/qemu/qmp/protocol.py).
 */
import type { Duplex } from 'node:stream';

export abstract class QmpProtocol {
  #stream: Duplex | undefined;
  #firstError: Error | undefined;
  #closed: Promise<void>;
  #resolveClosed!: () => void;
  #isClosed = false;

  constructor() {
    this.#closed = new Promise((res) => {
      this.#resolveClosed = res;
    });
  }

  /** Takes over a connected stream. */
  protected attach(stream: Duplex): void {
    this.#stream = stream;
    stream.on('data', (chunk: Buffer) => {
      try {
        this.onData(chunk);
      } catch (e) {
        this.fail(e as Error);
      }
    });
    // A peer that goes away resets the socket: that ends the session, it is not a fault.
    stream.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'ECONNRESET' || e.code === 'EPIPE' ? this.#finish() : this.fail(e),
    );
    stream.on('close', () => this.#finish());
    stream.on('end', () => stream.end());
    stream.on('drain', () => {
      try {
        this.onDrain();
      } catch (e) {
        this.fail(e as Error);
      }
    });
  }

  /** Bytes arrived; the subclass frames and parses them. */
  protected abstract onData(chunk: Buffer): void;
  /** The stream ended, for whatever reason; called once. */
  protected abstract onClose(error: Error | undefined): void;

  /** Everything written so far has left for the peer (the stream's 'drain'). */
  protected onDrain(): void {}

  /** Stops (false) or restarts (true) reading from the peer; bytes wait in the kernel meanwhile. */
  protected set reading(on: boolean) {
    const s = this.#stream;
    if (!s || this.#isClosed) return;
    if (on) s.resume();
    else s.pause();
  }

  /** Bytes written that the peer has not taken yet (held by the stream, past the kernel's buffers). */
  protected get unsent(): number {
    return this.#stream?.writableLength ?? 0;
  }

  /** Writes encoded bytes; returns false when the stream is gone. */
  protected write(data: string | Buffer): boolean {
    const s = this.#stream;
    if (!s || this.#isClosed || s.destroyed || s.writableEnded) return false;
    s.write(data);
    return true;
  }

  /** Records a background error (the first one is kept) and drops the connection. */
  protected fail(error: Error): void {
    this.#firstError ??= error;
    this.#stream?.destroy();
    this.#finish();
  }

  #finish(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.onClose(this.#firstError);
    this.#resolveClosed();
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves once the connection has ended. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /**
   * Ends the connection and waits for it to close.
   * @throws the first error that broke the connection in the background, if any.
   */
  async close(): Promise<void> {
    const s = this.#stream;
    if (!this.#isClosed && s) {
      // Let what was written reach the peer, then drop the connection without waiting for
      // the peer to close its side.
      await new Promise<void>((res) => {
        const t = setTimeout(res, 1000);
        s.end(() => {
          clearTimeout(t);
          res();
        });
      });
      s.destroy();
      await this.#closed;
    }
    if (this.#firstError) throw this.#firstError;
  }
}
