/**
 * The HMP command tables qmigrate implements: the migration commands (postcopy's too) plus help, info, stop,
 * cont, quit, object_add and object_del (and `info memdev`), with QEMU 10.0's names, argument specs, parameter strings and help texts
 * (qemu/qemu: hmp-commands.hx, hmp-commands-info.hx). QEMU sorts both tables by name at
 * startup (monitor/monitor.c sortcmdlist), which decides the order `help` lists them in.
 */

/** What a command runs; the handlers live in hmp.ts. */
export type CommandId =
  | 'cont'
  | 'help'
  | 'info'
  | 'migrate'
  | 'migrate_cancel'
  | 'migrate_incoming'
  | 'migrate_pause'
  | 'migrate_recover'
  | 'migrate_set_capability'
  | 'migrate_set_parameter'
  | 'migrate_start_postcopy'
  | 'object_add'
  | 'object_del'
  | 'quit'
  | 'stop'
  | 'info memdev'
  | 'info migrate'
  | 'info migrate_capabilities'
  | 'info migrate_parameters'
  | 'info status'
  | 'info version';

/** One entry of an HMP command table (QEMU's HMPCommand). */
export interface CommandDef {
  /** The name and its aliases, `|`-separated, as printed by `help`. */
  readonly name: string;
  /** QEMU's args_type: `key:type` items, `,`-separated (monitor/hmp.c parses it). */
  readonly argsType: string;
  readonly params: string;
  readonly help: string;
  readonly id: CommandId;
  readonly subTable?: readonly CommandDef[];
  /** The argument completion QEMU registers for the command, if any. */
  readonly completion?: 'capability' | 'parameter';
}

/** The table in strcmp() order of names, which is byte order for these ASCII names. */
function sortTable(table: CommandDef[]): readonly CommandDef[] {
  return table.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export const INFO_COMMANDS = sortTable([
  { name: 'memdev', argsType: '', params: '', help: 'show memory backends', id: 'info memdev' },
  { name: 'migrate', argsType: '', params: '', help: 'show migration status', id: 'info migrate' },
  {
    name: 'migrate_capabilities',
    argsType: '',
    params: '',
    help: 'show current migration capabilities',
    id: 'info migrate_capabilities',
  },
  {
    name: 'migrate_parameters',
    argsType: '',
    params: '',
    help: 'show current migration parameters',
    id: 'info migrate_parameters',
  },
  {
    name: 'status',
    argsType: '',
    params: '',
    help: 'show the current VM status (running|paused)',
    id: 'info status',
  },
  { name: 'version', argsType: '', params: '', help: 'show the version of QEMU', id: 'info version' },
]);

export const HMP_COMMANDS = sortTable([
  { name: 'cont|c', argsType: '', params: '', help: 'resume emulation', id: 'cont' },
  { name: 'help|?', argsType: 'name:S?', params: '[cmd]', help: 'show the help', id: 'help' },
  {
    name: 'info',
    argsType: 'item:s?',
    params: '[subcommand]',
    help: 'show various information about the system state',
    id: 'info',
    subTable: INFO_COMMANDS,
  },
  {
    name: 'migrate',
    argsType: 'detach:-d,resume:-r,uri:s',
    params: '[-d] [-r] uri',
    help: 'migrate to URI (using -d to not wait for completion)\n\t\t\t -r to resume a paused postcopy migration',
    id: 'migrate',
  },
  {
    name: 'migrate_cancel',
    argsType: '',
    params: '',
    help: 'cancel the current VM migration',
    id: 'migrate_cancel',
  },
  {
    name: 'migrate_incoming',
    argsType: 'uri:s',
    params: 'uri',
    help: 'Continue an incoming migration from an -incoming defer',
    id: 'migrate_incoming',
  },
  {
    name: 'migrate_pause',
    argsType: '',
    params: '',
    help: 'Pause an ongoing migration (postcopy-only)',
    id: 'migrate_pause',
  },
  {
    name: 'migrate_recover',
    argsType: 'uri:s',
    params: 'uri',
    help: 'Continue a paused incoming postcopy migration',
    id: 'migrate_recover',
  },
  {
    name: 'migrate_set_capability',
    argsType: 'capability:s,state:b',
    params: 'capability state',
    help: 'Enable/Disable the usage of a capability for migration',
    id: 'migrate_set_capability',
    completion: 'capability',
  },
  {
    name: 'migrate_set_parameter',
    argsType: 'parameter:s,value:s',
    params: 'parameter value',
    help: 'Set the parameter for migration',
    id: 'migrate_set_parameter',
    completion: 'parameter',
  },
  {
    name: 'migrate_start_postcopy',
    argsType: '',
    params: '',
    help:
      'Followup to a migration command to switch the migration to postcopy mode. ' +
      'The postcopy-ram capability must be set on both source and destination before the original migration command .',
    id: 'migrate_start_postcopy',
  },
  {
    name: 'object_add',
    argsType: 'object:S',
    params: '[qom-type=]type,id=str[,prop=value][,...]',
    help: 'create QOM object',
    id: 'object_add',
  },
  { name: 'object_del', argsType: 'id:s', params: 'id', help: 'destroy QOM object', id: 'object_del' },
  { name: 'quit|q', argsType: '', params: '', help: 'quit the emulator', id: 'quit' },
  { name: 'stop|s', argsType: '', params: '', help: 'stop emulation', id: 'stop' },
]);

/** hmp_compare_cmd(): does `name` equal one of the `|`-separated names in `list`? */
export function compareCmd(name: string, list: string): boolean {
  return list.split('|').includes(name);
}
