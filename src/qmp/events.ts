/**
 * QMP events for clients: each listener has its own queue, filtered by event name, and is an
 * AsyncIterable that ends when the session ends or the listener is closed (cf.
 * python/qemu/qmp/events.py). Events are only ever delivered here, never taken for replies.
 * A listener nobody takes from stops at MAX_PENDING_EVENTS and says so, so a peer that floods
 * events cannot grow the client without bound.
 */
import type { EventName, Events } from '../qapi/types.js';
import { EventOverflowError } from './errors.js';

/**
 * Events a listener holds before it gives up (python's qemu.qmp keeps any number). QEMU sends
 * a handful per migration; this many untaken means nobody is reading.
 */
export const MAX_PENDING_EVENTS = 10_000;

/** An event as QMP delivers it; a union over the names, so `event` narrows `data`. */
export type QmpEvent<N extends EventName = EventName> = {
  [K in N]: { event: K; data: Events[K]; timestamp: { seconds: number; microseconds: number } };
}[N];

/** A filtered, buffered stream of events. Close it (or `using` it) when done. */
export class EventListener<N extends EventName = EventName>
  implements AsyncIterable<QmpEvent<N>>, Disposable
{
  readonly names: ReadonlySet<string> | undefined;
  readonly #queue: QmpEvent<N>[] = [];
  #wake: (() => void) | undefined;
  #done = false;
  #overflowed = false;
  readonly #onClose: (l: EventListener<N>) => void;

  constructor(names: readonly N[] | undefined, onClose: (l: EventListener<N>) => void) {
    this.names = names?.length ? new Set(names) : undefined;
    this.#onClose = onClose;
  }

  /** Whether this listener wants the event. */
  accepts(name: string): boolean {
    return !this.names || this.names.has(name);
  }

  /** @internal Called by the client for every event. */
  push(e: QmpEvent): void {
    if (this.#done || !this.accepts(e.event)) return;
    if (this.#queue.length >= MAX_PENDING_EVENTS) {
      // The events held stay deliverable; the reader learns of the gap after them.
      this.#overflowed = true;
      this.close();
      return;
    }
    this.#queue.push(e as QmpEvent<N>);
    this.#wake?.();
  }

  /** @internal Ends iteration once the queue is drained. */
  end(): void {
    this.#done = true;
    this.#wake?.();
  }

  close(): void {
    if (this.#done) return;
    this.end();
    this.#onClose(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Events received and not yet taken. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * The next event, waiting for one if none is queued; undefined once the listener ended.
   * With a signal, stops waiting when it aborts (and rejects with its reason).
   * @throws {EventOverflowError} once the events held are taken, when more came than it holds.
   */
  async get(signal?: AbortSignal): Promise<QmpEvent<N> | undefined> {
    for (;;) {
      const e = this.#queue.shift();
      if (e) return e;
      if (this.#overflowed) throw new EventOverflowError(MAX_PENDING_EVENTS, []);
      if (this.#done) return undefined;
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /**
   * Removes and returns every queued event.
   * @throws {EventOverflowError} carrying them, when more came than the listener holds.
   */
  drain(): QmpEvent<N>[] {
    const events = this.#queue.splice(0);
    if (this.#overflowed) throw new EventOverflowError(MAX_PENDING_EVENTS, events);
    return events;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<QmpEvent<N>> {
    for (;;) {
      const e = await this.get();
      if (!e) return;
      yield e;
    }
  }
}
