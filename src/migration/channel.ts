/**
 * Incoming connections (migration/channel.c, and migration.c's migration_ioc_process_incoming):
 * an accepted socket is read into buffers we choose, and with multifd its first bytes tell the
 * main stream (the stream magic) from a multifd channel (an init packet).
 */
import type { Socket } from 'node:net';
import { MultifdReceiver } from './multifd.js';
import { QemuFileReader, StreamError } from './stream/qemu-file.js';
import { QEMU_VM_FILE_MAGIC } from './stream/savevm.js';
import { type ReadSink, readInto } from './transport/socket.js';

/** Reads go to the free tail of a 1 MiB buffer, and a new one starts below 64 KiB of tail. */
const POOL = 1 << 20;
const MIN_READ = 64 << 10;
const INIT = 64;

/**
 * Feeds a QemuFileReader with views of large buffers: no allocation or copy per read. A
 * buffer the reader has consumed entirely is used again (the reader copies out what it
 * keeps), so a long stream cycles through a few warm buffers instead of mapping fresh memory.
 */
class StreamSink implements ReadSink {
  #pool: Buffer = Buffer.allocUnsafe(POOL);
  #at = 0;
  /** Stream bytes pushed so far (counting any the reader was given before this sink). */
  #pushed: number;
  /** Full buffers, oldest first, with the stream offset their last byte ends at. */
  readonly #retired: { buf: Buffer; end: number }[] = [];
  constructor(readonly reader: QemuFileReader) {
    this.#pushed = reader.offset + reader.available;
  }

  target(): Buffer {
    if (this.#pool.length - this.#at < MIN_READ) {
      this.#retired.push({ buf: this.#pool, end: this.#pushed });
      const oldest = this.#retired[0]!;
      this.#pool = this.reader.offset >= oldest.end ? this.#retired.shift()!.buf : Buffer.allocUnsafe(POOL);
      this.#at = 0;
    }
    return this.#pool.subarray(this.#at);
  }

  filled(n: number): boolean {
    const chunk = this.#pool.subarray(this.#at, this.#at + n);
    this.#at += n;
    this.#pushed += n;
    return this.reader.push(chunk);
  }
}

export interface ChannelHandlers {
  /** The connection is the main stream; `socket` also carries the return path. */
  main(socket: Socket, reader: QemuFileReader): void;
  /** The connection is multifd channel `id` (its packets are being applied already). */
  multifd(id: number): void;
  /** The connection failed before or while being a multifd channel. */
  error(socket: Socket, e: Error): void;
}

/**
 * Takes over an accepted connection. Without a multifd receiver it is the main stream;
 * with one, its first 64 bytes decide.
 */
export function acceptChannel(
  accepted: Socket,
  receiver: MultifdReceiver | undefined,
  count: number,
  on: ChannelHandlers,
): Socket {
  let sink: ReadSink | undefined;
  let ended: (() => void) | undefined;
  const head = Buffer.allocUnsafe(INIT);
  let got = 0;

  let mainReader: QemuFileReader | undefined;
  /** Makes this the main stream; `announce` once the socket exists. */
  const asMain = (first: Buffer | undefined, announce = true) => {
    const reader = new QemuFileReader({ resume: () => socket.resume() });
    if (first?.length) reader.push(first);
    mainReader = reader;
    ended = () => reader.end();
    sink = new StreamSink(reader);
    if (announce) on.main(socket, reader);
  };
  // Without multifd there is nothing to tell apart: read the stream from the first byte.
  if (!receiver) asMain(undefined, false);

  const classify = (): boolean => {
    if (head.readUInt32BE(0) === QEMU_VM_FILE_MAGIC) {
      asMain(head);
      return true;
    }
    try {
      const id = MultifdReceiver.parseInit(head, count);
      const ch = receiver!.channel(
        id,
        () => socket.resume(),
        (e) => on.error(socket, e),
      );
      sink = ch;
      ended = () => ch.end();
      on.multifd(id);
      return true;
    } catch (e) {
      ended = () => {};
      on.error(socket, e as Error);
      return false;
    }
  };

  const socket = readInto(accepted, {
    target: () => sink?.target() ?? head.subarray(got),
    filled: (n) => {
      if (sink) return sink.filled(n);
      got += n;
      return got < INIT || classify();
    },
  });
  const finish = () => {
    if (ended) return ended();
    ended = () => {};
    // Short of an init packet: a main stream may still say what is wrong with it.
    if (got >= 4 && head.readUInt32BE(0) === QEMU_VM_FILE_MAGIC) {
      asMain(head.subarray(0, got));
      ended();
      return;
    }
    on.error(
      socket,
      new StreamError(
        `stream ended early: the first bytes of a connection need ${INIT} bytes, only ${got} came`,
        got,
        'multifd',
      ),
    );
  };
  socket.on('end', finish);
  socket.on('close', finish);
  socket.on('error', (e) => (mainReader ? mainReader.fail(e) : on.error(socket, e)));
  if (mainReader) on.main(socket, mainReader);
  socket.resume();
  return socket;
}
