/**
 * The VM run state (system/runstate.c): the states QEMU reports in `query-status`, the
 * transitions `stop` / `cont` and migration make, and the STOP / RESUME events they emit.
 */
import type { GuestRunState } from '../migration/migration.js';
import { genericError } from '../qapi/errors.js';
import type { RunState } from '../qapi/types.js';

/** States in which the guest is live (do_vm_stop acts only on these). */
const LIVE: readonly RunState[] = ['running', 'suspended'];

export interface RunStateHost {
  emit(event: 'STOP' | 'RESUME'): void;
  /** The guest starts or stops executing (workload, dirty tracking...). */
  onRunning?(running: boolean): void;
}

/** The guest's run state; migration drives it through the GuestRunState it declares. */
export class RunStateMachine implements GuestRunState {
  #state: RunState;
  /** Start the guest when an incoming migration completes (cleared by `stop` in inmigrate). */
  autostart: boolean;
  readonly #host: RunStateHost;

  constructor(initial: RunState, autostart: boolean, host: RunStateHost) {
    this.#state = initial;
    this.autostart = autostart;
    this.#host = host;
  }

  get state(): RunState {
    return this.#state;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** Sets a state without events (migration's internal steps, e.g. finish-migrate). */
  set(s: RunState): void {
    const was = this.running;
    this.#state = s;
    if (was !== this.running) this.#host.onRunning?.(this.running);
  }

  /** vm_stop(): a live guest stops and STOP is sent; otherwise nothing happens. */
  stop(to: RunState = 'paused'): void {
    if (!LIVE.includes(this.#state)) return;
    this.set(to);
    this.#host.emit('STOP');
  }

  /** vm_start(): a stopped guest runs and RESUME is sent. */
  start(): void {
    if (this.running) return;
    this.set('running');
    this.#host.emit('RESUME');
  }

  /** QMP `stop`. */
  qmpStop(): void {
    if (this.#state === 'inmigrate') this.autostart = false;
    else this.stop('paused');
  }

  /** QMP `cont`. @throws {QapiError} where QEMU refuses. */
  qmpCont(): void {
    if (['internal-error', 'shutdown', 'guest-panicked'].includes(this.#state)) {
      throw genericError('Resetting the Virtual Machine is required');
    }
    if (this.#state === 'suspended') return;
    if (this.#state === 'finish-migrate') throw genericError('Migration is not finalized yet');
    if (this.#state === 'inmigrate') this.autostart = true;
    else this.start();
  }
}
