/**
 * Byte I/O of the migration stream (migration/qemu-file.c): a writer that batches small
 * records in one buffer, sends page bytes as views of guest RAM in the same vectored write,
 * honours back-pressure and counts bytes; and a reader that hands out big-endian integers and
 * byte runs from the chunks a stream delivers, synchronously while data is buffered, and
 * waits only when it runs dry. The first error is sticky on both sides.
 */
import type { Readable, Writable } from 'node:stream';
import { QmigrateError } from '../../errors.js';
import { genericError } from '../../qapi/errors.js';
import { readBe64, writeBe64 } from '../../util/be64.js';
import { systemError } from '../../util/errno.js';

/** Control characters (C0, DEL, C1) a peer may put in a name the message quotes. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: they are what is matched
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * An error in the incoming stream, with where it happened (byte offset, section name). Names
 * the peer sent (block ids, section names) are quoted in the message as they came, but a
 * control byte among them is written `\xNN`: the message goes to query-migrate, the
 * monitors and stderr, where a raw escape sequence or newline from the peer has no place.
 */
export class StreamError extends QmigrateError {
  constructor(
    message: string,
    readonly offset: number,
    public section?: string,
  ) {
    super(
      'MIGRATION_STREAM',
      message.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`),
    );
  }
}

const SMALL = 64 * 1024;

function epipe(): Error {
  return systemError('EPIPE', 'write');
}

export class QemuFileWriter {
  readonly #out: Writable;
  /** Small records accumulate here and go out with the page views between them. */
  #small = Buffer.allocUnsafe(SMALL);
  #smallStart = 0;
  #smallEnd = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #error: Error | undefined;
  /** Bytes handed to the transport so far. */
  transferred = 0;

  constructor(out: Writable) {
    this.#out = out;
    out.on('error', (e) => {
      this.#error ??= e;
    });
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /** A write's callback failed: the first error stands, or the pipe is broken. */
  #fail(): Error {
    this.#error ??= epipe();
    return this.#error;
  }

  /**
   * Throws if bytes still to be written can no longer reach the peer. A socket whose peer
   * closed first is ended and destroyed by Node without an 'error' event, and later writes
   * fail only in their callbacks: that is a broken pipe, not bytes handed over. (Bytes that
   * were handed over before the peer closed are not affected: a destination closes as soon
   * as it has read the whole stream.)
   */
  #check(): void {
    if (this.#out.destroyed || this.#out.writableEnded) this.#error ??= epipe();
    if (this.#error) throw this.#error;
  }

  #room(n: number): void {
    if (this.#smallEnd + n <= this.#small.length) return;
    this.#cutSmall();
    // The old buffer may still be referenced by queued writes: start a fresh one.
    this.#small = Buffer.allocUnsafe(Math.max(SMALL, n));
    this.#smallStart = this.#smallEnd = 0;
  }

  #cutSmall(): void {
    if (this.#smallEnd > this.#smallStart) {
      this.#pending.push(this.#small.subarray(this.#smallStart, this.#smallEnd));
      this.#smallStart = this.#smallEnd;
    }
  }

  u8(v: number): void {
    this.#room(1);
    this.#small[this.#smallEnd++] = v;
    this.#pendingBytes += 1;
  }

  be16(v: number): void {
    this.#room(2);
    this.#small.writeUInt16BE(v, this.#smallEnd);
    this.#smallEnd += 2;
    this.#pendingBytes += 2;
  }

  be32(v: number): void {
    this.#room(4);
    this.#small.writeUInt32BE(v >>> 0, this.#smallEnd);
    this.#smallEnd += 4;
    this.#pendingBytes += 4;
  }

  /**
   * A 64-bit value given as a JS number below 2^53 (offsets, lengths, flag words).
   * @throws {InternalError} for anything else (see writeBe64).
   */
  be64(v: number): void {
    this.#room(8);
    writeBe64(this.#small, this.#smallEnd, v);
    this.#smallEnd += 8;
    this.#pendingBytes += 8;
  }

  /** Copies bytes into the record buffer (short strings, small payloads). */
  bytes(b: Uint8Array): void {
    if (b.length > 512) {
      this.view(Buffer.from(b));
      return;
    }
    this.#room(b.length);
    this.#small.set(b, this.#smallEnd);
    this.#smallEnd += b.length;
    this.#pendingBytes += b.length;
  }

  /**
   * A counted string: u8 length and the bytes.
   * @throws {QapiError} when `s` has more than 255 bytes (a RAM block's id can).
   */
  cstr(s: string): void {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw genericError(`name too long for the stream: ${s}`);
    this.u8(b.length);
    this.bytes(b);
  }

  /** Queues a view (no copy): the bytes must stay unchanged until flushed. */
  view(b: Buffer): void {
    this.#cutSmall();
    this.#pending.push(b);
    this.#pendingBytes += b.length;
  }

  /** Bytes queued and not yet handed to the transport. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Bytes handed to the transport that it still holds in the process (Node's write queue). */
  get queuedBytes(): number {
    return this.#out.writableLength;
  }

  /**
   * Bytes the transport has passed on to the kernel: what the peer can have taken. This,
   * not `transferred`, is what rates and progress count (QEMU's counters are of bytes written
   * to the channel), so a peer that stops reading shows as a stall, not as progress.
   */
  get written(): number {
    return this.transferred - this.#out.writableLength;
  }

  /**
   * Hands everything queued to the transport in one vectored write.
   * @returns false when the transport asks us to wait for 'drain'.
   */
  flush(): boolean {
    this.#cutSmall();
    if (this.#error) throw this.#error;
    const parts = this.#pending;
    if (parts.length === 0) return true;
    this.#check();
    this.#pending = [];
    this.transferred += this.#pendingBytes;
    this.#pendingBytes = 0;
    let ok = true;
    if (parts.length === 1) ok = this.#out.write(parts[0]);
    else {
      this.#out.cork();
      for (const p of parts) ok = this.#out.write(p) && ok;
      this.#out.uncork();
    }
    return ok;
  }

  /** Whether the transport asked us to wait for 'drain' before writing more. */
  get busy(): boolean {
    return this.#out.writableNeedDrain && this.#out.writableLength > 0;
  }

  /**
   * Waits until what was flushed has left for the transport, without flushing what is
   * pending: the caller prepares the next batch while the previous one drains.
   */
  async drained(): Promise<void> {
    if (this.#error) throw this.#error;
    // 'drain' comes only after a write() that returned false: below the high-water mark
    // there is nothing to wait for (and no event would come).
    if (this.#out.writableLength === 0 || !this.#out.writableNeedDrain) return;
    this.#check();
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        this.#out.off('drain', done);
        this.#out.off('error', fail);
        this.#out.off('close', done);
        if (this.#out.destroyed) this.#error ??= epipe();
        resolve();
      };
      const fail = (e: Error) => {
        this.#out.off('drain', done);
        this.#out.off('close', done);
        reject(e);
      };
      this.#out.once('drain', done);
      this.#out.once('error', fail);
      this.#out.once('close', done);
    });
    if (this.#error) throw this.#error;
  }

  /** Flushes and waits until every byte so far has been handed to the transport. */
  async settled(): Promise<void> {
    this.flush();
    if (this.#out.writableLength > 0) {
      this.#check();
      await new Promise<void>((resolve, reject) => {
        // Writes complete in order: the callback of an empty one comes after all before it.
        this.#out.write(Buffer.alloc(0), (e) => (e ? reject(this.#fail()) : resolve()));
      });
    }
    if (this.#error) throw this.#error;
  }

  /** Flushes, then waits until the transport has room again (back-pressure). */
  async drain(): Promise<void> {
    if (this.flush()) return;
    await this.drained();
  }

  /** Flushes and ends the stream, resolving when everything was written. */
  async end(): Promise<void> {
    this.flush();
    // Everything was handed over and the peer closed first: nothing is lost.
    if (this.#out.writableEnded && this.#out.writableLength === 0 && !this.#error) return;
    this.#check();
    await new Promise<void>((resolve, reject) => {
      this.#out.once('error', reject);
      this.#out.end((e?: Error | null) => (e ? reject(this.#fail()) : resolve()));
    });
    if (this.#error) throw this.#error;
  }
}

/**
 * Reads from a Readable, or from chunks a feeder pushes. Callers check `available` (or await `need(n)`) before the synchronous
 * accessors, so the per-record path makes no promise unless the buffer runs dry.
 */
export class QemuFileReader {
  /** Stops and restarts the source (back-pressure). */
  readonly #source: { resume(): void };
  #chunks: Buffer[] = [];
  #head = 0;
  #avail = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #paused = false;
  readonly #highWater: number;
  /** Bytes consumed so far: the offset of the next byte in the stream. */
  offset = 0;

  /**
   * `src`: a Readable to subscribe to; or `{ resume }` for a feeder that calls push/end/fail
   * itself and stops when push returns false, until `resume` is called.
   */
  constructor(src: Readable | { resume(): void }, highWater = 16 << 20) {
    this.#highWater = highWater;
    this.#source = src;
    if (!('on' in src)) return;
    src.on('data', (c: Buffer) => {
      if (!this.push(c)) src.pause();
    });
    src.on('end', () => this.end());
    src.on('error', (e) => this.fail(e));
    src.on('close', () => this.end());
  }

  /** Adds bytes. @returns false when the buffer is over its high-water mark: stop feeding. */
  push(c: Buffer): boolean {
    this.#chunks.push(c);
    this.#avail += c.length;
    this.#wake?.();
    if (this.#avail > this.#highWater) this.#paused = true;
    return !this.#paused;
  }

  /** The source has no more bytes. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** The source failed: readers get `e`. */
  fail(e: Error): void {
    this.#error ??= e;
    this.#wake?.();
  }

  get available(): number {
    return this.#avail;
  }

  /** Waits until `n` bytes are buffered. @throws {StreamError} at end of stream. */
  async need(n: number, what = 'data'): Promise<void> {
    while (this.#avail < n) {
      if (this.#error) throw this.#error;
      if (this.#ended) {
        throw new StreamError(
          `stream ended early: ${what} needs ${n} bytes, only ${this.#avail} left`,
          this.offset,
        );
      }
      await this.#more();
    }
    if (this.#error) throw this.#error;
  }

  /** Resumes the source if it was paused and waits for its next event. */
  async #more(): Promise<void> {
    if (this.#paused) {
      this.#paused = false;
      this.#source.resume();
    }
    await new Promise<void>((r) => {
      this.#wake = r;
    });
    this.#wake = undefined;
  }

  /**
   * Buffers the rest of the stream without consuming it, as long as it is at most `max`
   * bytes (the analyser's look-ahead for a pipe's VM description, which comes last).
   * @returns the bytes up to the end, or undefined when more than `max` remain.
   */
  async peekToEnd(max: number): Promise<Buffer | undefined> {
    while (!this.#ended) {
      if (this.#error) throw this.#error;
      if (this.#avail > max) return undefined;
      await this.#more();
    }
    if (this.#error) throw this.#error;
    return this.#avail > max ? undefined : this.peekBytes(this.#avail);
  }

  /** True once the source has ended and everything was consumed. */
  async atEnd(): Promise<boolean> {
    while (this.#avail === 0 && !this.#ended && !this.#error) await this.#more();
    return this.#avail === 0;
  }

  #advance(n: number): void {
    this.#avail -= n;
    this.offset += n;
    this.#head += n;
    while (this.#chunks.length && this.#head >= this.#chunks[0]!.length) {
      this.#head -= this.#chunks[0]!.length;
      this.#chunks.shift();
    }
    if (this.#paused && this.#avail < this.#highWater / 2) {
      this.#paused = false;
      this.#source.resume();
    }
  }

  /** The next `n` bytes, without consuming them (requires available >= n). */
  peekBytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.#copyOut(out, 0, n, false);
    return out;
  }

  /** The next byte, without consuming it (requires available >= 1). */
  peekU8(): number {
    return this.#chunks[0]![this.#head]!;
  }

  u8(): number {
    const v = this.#chunks[0]![this.#head]!;
    this.#advance(1);
    return v;
  }

  #contiguous(n: number): [Buffer, number] {
    const c = this.#chunks[0]!;
    if (c.length - this.#head >= n) return [c, this.#head];
    const tmp = Buffer.allocUnsafe(n);
    this.#copyOut(tmp, 0, n, false);
    return [tmp, 0];
  }

  be16(): number {
    const [b, o] = this.#contiguous(2);
    const v = b.readUInt16BE(o);
    this.#advance(2);
    return v;
  }

  be32(): number {
    const [b, o] = this.#contiguous(4);
    const v = b.readUInt32BE(o);
    this.#advance(4);
    return v;
  }

  /** A be64 as a number: exact below 2^53, at least 2^53 above (see readBe64). */
  be64(): number {
    const [b, o] = this.#contiguous(8);
    const v = readBe64(b, o);
    this.#advance(8);
    return v;
  }

  /** `n` bytes as a new Buffer. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.#copyOut(out, 0, n, true);
    return out;
  }

  /** Copies `n` bytes into `target` at `at` (guest RAM), consuming them. */
  copyTo(target: Buffer, at: number, n: number): void {
    this.#copyOut(target, at, n, true);
  }

  skip(n: number): void {
    this.#advance(n);
  }

  #copyOut(target: Buffer, at: number, n: number, consume: boolean): void {
    let i = 0;
    let head = this.#head;
    let left = n;
    while (left > 0) {
      const c = this.#chunks[i]!;
      const take = Math.min(left, c.length - head);
      c.copy(target, at + n - left, head, head + take);
      left -= take;
      head = 0;
      i++;
    }
    if (consume) this.#advance(n);
  }

  /** Reads a counted string (u8 length + bytes); requires the length byte to be available. */
  async cstr(what: string): Promise<string> {
    await this.need(1, what);
    const len = this.peekU8();
    await this.need(1 + len, what);
    this.skip(1);
    return this.bytes(len).toString('latin1');
  }
}
