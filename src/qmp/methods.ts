// Generated from src/qapi/schema.json by `npm run gen` (src/qapi/gen-types.ts). Do not edit.
import type { CommandName, Commands } from '../qapi/types.js';

/** Per-call options of every command. */
export interface ExecuteOptions {
  /** Milliseconds to wait for the reply (default: the client's commandTimeout, else forever). */
  timeout?: number;
  /** Stops waiting for the reply when aborted. */
  signal?: AbortSignal;
  /** Send as `exec-oob` (needs the oob capability). */
  oob?: boolean;
}

/** One typed method per QMP command of the schema. */
export abstract class QmpCommandMethods {
  abstract execute<C extends CommandName>(
    command: C,
    args?: Commands[C]['args'],
    options?: ExecuteOptions,
  ): Promise<Commands[C]['returns']>;

  /** Report the status and progress of migration. (`query-migrate`) */
  queryMigrate(options?: ExecuteOptions): Promise<Commands['query-migrate']['returns']> {
    return this.execute('query-migrate', undefined, options);
  }

  /** Turn a list of migration capabilities on or off. (`migrate-set-capabilities`) */
  migrateSetCapabilities(args: Commands['migrate-set-capabilities']['args'], options?: ExecuteOptions): Promise<Commands['migrate-set-capabilities']['returns']> {
    return this.execute('migrate-set-capabilities', args, options);
  }

  /** List every migration capability together with its current state. (`query-migrate-capabilities`) */
  queryMigrateCapabilities(options?: ExecuteOptions): Promise<Commands['query-migrate-capabilities']['returns']> {
    return this.execute('query-migrate-capabilities', undefined, options);
  }

  /** Change one or more migration parameters. (`migrate-set-parameters`) */
  migrateSetParameters(args: Commands['migrate-set-parameters']['args'], options?: ExecuteOptions): Promise<Commands['migrate-set-parameters']['returns']> {
    return this.execute('migrate-set-parameters', args, options);
  }

  /** Report the current migration parameters. (`query-migrate-parameters`) */
  queryMigrateParameters(options?: ExecuteOptions): Promise<Commands['query-migrate-parameters']['returns']> {
    return this.execute('query-migrate-parameters', undefined, options);
  }

  /** Switch a running migration over to postcopy mode. (`migrate-start-postcopy`) */
  migrateStartPostcopy(options?: ExecuteOptions): Promise<Commands['migrate-start-postcopy']['returns']> {
    return this.execute('migrate-start-postcopy', undefined, options);
  }

  /** Cancel the migration in progress, succeeding even when none is running. (`migrate_cancel`) */
  migrateCancel(options?: ExecuteOptions): Promise<Commands['migrate_cancel']['returns']> {
    return this.execute('migrate_cancel', undefined, options);
  }

  /** Resume a migration that is paused in the given state. (`migrate-continue`) */
  migrateContinue(args: Commands['migrate-continue']['args'], options?: ExecuteOptions): Promise<Commands['migrate-continue']['returns']> {
    return this.execute('migrate-continue', args, options);
  }

  /** Start migrating the running guest to a destination given by URI or channel list. (`migrate`) */
  migrate(args?: Commands['migrate']['args'], options?: ExecuteOptions): Promise<Commands['migrate']['returns']> {
    return this.execute('migrate', args, options);
  }

  /** Begin listening for an incoming migration on a QEMU started with -incoming defer. (`migrate-incoming`) */
  migrateIncoming(args?: Commands['migrate-incoming']['args'], options?: ExecuteOptions): Promise<Commands['migrate-incoming']['returns']> {
    return this.execute('migrate-incoming', args, options);
  }

  /** Give a new URI over which a paused postcopy migration can recover. (`migrate-recover`) */
  migrateRecover(args: Commands['migrate-recover']['args'], options?: ExecuteOptions): Promise<Commands['migrate-recover']['returns']> {
    return this.execute('migrate-recover', args, options);
  }

  /** Pause a migration that is in postcopy mode. (`migrate-pause`) */
  migratePause(options?: ExecuteOptions): Promise<Commands['migrate-pause']['returns']> {
    return this.execute('migrate-pause', undefined, options);
  }

  /** Report the run state of the virtual machine. (`query-status`) */
  queryStatus(options?: ExecuteOptions): Promise<Commands['query-status']['returns']> {
    return this.execute('query-status', undefined, options);
  }

  /** List the memory backend objects. (`query-memdev`) */
  queryMemdev(options?: ExecuteOptions): Promise<Commands['query-memdev']['returns']> {
    return this.execute('query-memdev', undefined, options);
  }

  /** Halt execution of all guest vCPUs. (`stop`) */
  stop(options?: ExecuteOptions): Promise<Commands['stop']['returns']> {
    return this.execute('stop', undefined, options);
  }

  /** Resume execution of all guest vCPUs. (`cont`) */
  cont(options?: ExecuteOptions): Promise<Commands['cont']['returns']> {
    return this.execute('cont', undefined, options);
  }

  /** Run a human monitor (HMP) command line and return its text output. (`human-monitor-command`) */
  humanMonitorCommand(args: Commands['human-monitor-command']['args'], options?: ExecuteOptions): Promise<Commands['human-monitor-command']['returns']> {
    return this.execute('human-monitor-command', args, options);
  }

  /** Store a file descriptor received over the monitor socket under a name. (`getfd`) */
  getfd(args: Commands['getfd']['args'], options?: ExecuteOptions): Promise<Commands['getfd']['returns']> {
    return this.execute('getfd', args, options);
  }

  /** Close a file descriptor previously stored under a name. (`closefd`) */
  closefd(args: Commands['closefd']['args'], options?: ExecuteOptions): Promise<Commands['closefd']['returns']> {
    return this.execute('closefd', args, options);
  }

  /** Place a file descriptor received over the monitor socket into an fd set. (`add-fd`) */
  addFd(args?: Commands['add-fd']['args'], options?: ExecuteOptions): Promise<Commands['add-fd']['returns']> {
    return this.execute('add-fd', args, options);
  }

  /** Write a range of guest physical memory to a file. (`pmemsave`) */
  pmemsave(args: Commands['pmemsave']['args'], options?: ExecuteOptions): Promise<Commands['pmemsave']['returns']> {
    return this.execute('pmemsave', args, options);
  }

  /** Leave capabilities negotiation mode, optionally enabling QMP capabilities. (`qmp_capabilities`) */
  qmpCapabilities(args?: Commands['qmp_capabilities']['args'], options?: ExecuteOptions): Promise<Commands['qmp_capabilities']['returns']> {
    return this.execute('qmp_capabilities', args, options);
  }

  /** Report the QEMU version. (`query-version`) */
  queryVersion(options?: ExecuteOptions): Promise<Commands['query-version']['returns']> {
    return this.execute('query-version', undefined, options);
  }

  /** List the QMP commands this server accepts. (`query-commands`) */
  queryCommands(options?: ExecuteOptions): Promise<Commands['query-commands']['returns']> {
    return this.execute('query-commands', undefined, options);
  }

  /** Make QEMU exit. (`quit`) */
  quit(options?: ExecuteOptions): Promise<Commands['quit']['returns']> {
    return this.execute('quit', undefined, options);
  }

  /** Create a QOM object. (`object-add`) */
  objectAdd(args: Commands['object-add']['args'], options?: ExecuteOptions): Promise<Commands['object-add']['returns']> {
    return this.execute('object-add', args, options);
  }

  /** Remove a QOM object. (`object-del`) */
  objectDel(args: Commands['object-del']['args'], options?: ExecuteOptions): Promise<Commands['object-del']['returns']> {
    return this.execute('object-del', args, options);
  }

  /** Describe the QMP wire interface as a list of SchemaInfo entries. (`query-qmp-schema`) */
  queryQmpSchema(options?: ExecuteOptions): Promise<Commands['query-qmp-schema']['returns']> {
    return this.execute('query-qmp-schema', undefined, options);
  }
}
