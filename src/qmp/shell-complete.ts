/**
 * Tab completion for `qmigrate qmp`: command names from `query-commands`, argument names
 * (dotted, into nested objects, lists and union variants) and enum values from the
 * introspected schema of `query-qmp-schema` (qapi/introspect.json's SchemaInfo shapes).
 * qmp_shell.py completes command names only; HMP names come from the monitor's `help`.
 */

/** One entity of `query-qmp-schema`, as much of it as completion reads. */
interface Entity {
  name: string;
  'meta-type': string;
  'arg-type'?: string;
  'element-type'?: string;
  members?: { name: string; type?: string }[];
  /** A union's discriminator member. */
  tag?: string;
  variants?: { case: string; type: string }[];
  values?: string[];
}

/** What a completer returns: candidates for the word being typed, and that word. */
export type Completion = [string[], string];

/**
 * Completes QMP lines. `commands` are the names of `query-commands`; `schema` the entities
 * of `query-qmp-schema` (empty when the server has none: then only command names complete).
 */
export class QmpCompleter {
  readonly #commands: string[];
  readonly #types = new Map<string, Entity>();
  readonly #argType = new Map<string, string>();

  constructor(commands: readonly string[], schema: readonly unknown[]) {
    this.#commands = [...commands].sort();
    for (const e of schema as Entity[]) {
      if (typeof e?.name !== 'string') continue;
      this.#types.set(e.name, e);
      if (e['meta-type'] === 'command' && typeof e['arg-type'] === 'string')
        this.#argType.set(e.name, e['arg-type']);
    }
  }

  /** Candidates for the last word of `line` (the text left of the cursor). */
  complete(line: string): Completion {
    const start = line.search(/\S/);
    if (start < 0 || !/\s/.test(line.slice(start))) {
      const word = start < 0 ? '' : line.slice(start);
      return [this.#commands.filter((c) => c.startsWith(word)), word];
    }
    const command = line.slice(start).split(/\s+/)[0]!;
    const word = /\S*$/.exec(line)![0];
    const argType = this.#argType.get(command);
    if (!argType) return [[], word];
    // The other key=value words: a union's tag given there picks its variant, and a key
    // given there is not offered again.
    const given = new Map<string, string>();
    for (const w of line.slice(start).split(/\s+/).slice(1, -1)) {
      const at = w.indexOf('=');
      if (at > 0) given.set(w.slice(0, at), w.slice(at + 1));
    }
    const eq = word.indexOf('=');
    if (eq >= 0) return [this.#values(argType, word.slice(0, eq), word, given), word];
    return [this.#keys(argType, word, given), word];
  }

  /** Key names for `word` (`addr.tr` -> `addr.transport=`), walking dotted parts. */
  #keys(argType: string, word: string, given: ReadonlyMap<string, string>): string[] {
    const parts = word.split('.');
    const last = parts.pop()!;
    const type = this.#walk(argType, parts, given);
    if (type === undefined) return [];
    const prefix = parts.length ? `${parts.join('.')}.` : '';
    const t = this.#types.get(type);
    if (t?.['meta-type'] === 'array') return last === '' || '0'.startsWith(last) ? [`${prefix}0.`] : [];
    return this.#members(type, prefix, given)
      .filter((m) => m.name.startsWith(last) && !given.has(`${prefix}${m.name}`))
      .map((m) => `${prefix}${m.name}${this.#isNested(m.type) ? '.' : '='}`);
  }

  /** Values after `key=`: an enum's values, or true/false. */
  #values(argType: string, key: string, word: string, given: ReadonlyMap<string, string>): string[] {
    const type = this.#walk(argType, key.split('.'), given);
    const t = type === undefined ? undefined : this.#types.get(type);
    const values = t?.['meta-type'] === 'enum' ? (t.values ?? []) : type === 'bool' ? ['true', 'false'] : [];
    return values.map((v) => `${key}=${v}`).filter((v) => v.startsWith(word));
  }

  /** The type a dotted path leads to from `type`, or undefined when it leads nowhere. */
  #walk(type: string, path: readonly string[], given: ReadonlyMap<string, string>): string | undefined {
    let at: string | undefined = type;
    let prefix = '';
    for (const part of path) {
      const t: Entity | undefined = this.#types.get(at);
      if (t?.['meta-type'] === 'array') at = /^\d+$/.test(part) ? t['element-type'] : undefined;
      else at = this.#members(at, prefix, given).find((m) => m.name === part)?.type;
      if (at === undefined) return undefined;
      prefix += `${part}.`;
    }
    return at;
  }

  /**
   * An object's members (at dotted `prefix` of the line) with those of its union's variant
   * when the line gives its tag, else of every variant (first one of a name wins).
   */
  #members(
    type: string,
    prefix: string,
    given: ReadonlyMap<string, string>,
  ): { name: string; type?: string }[] {
    const t = this.#types.get(type);
    if (t?.['meta-type'] !== 'object') return [];
    const all = [...(t.members ?? [])];
    const tag = t.tag === undefined ? undefined : given.get(`${prefix}${t.tag}`);
    const chosen = t.variants?.filter((v) => v.case === tag) ?? [];
    for (const v of chosen.length ? chosen : (t.variants ?? []))
      all.push(...this.#members(v.type, prefix, given));
    const seen = new Set<string>();
    return all.filter((m) => !seen.has(m.name) && seen.add(m.name));
  }

  /** Whether a member is typed as an object or a list, so its completion ends in `.`. */
  #isNested(type: string | undefined): boolean {
    const m = type === undefined ? undefined : this.#types.get(type)?.['meta-type'];
    return m === 'object' || m === 'array';
  }
}

/**
 * HMP command names from the text of `help` (lines `name|alias args -- text`), and `info X`
 * from the lines of `help info` (`info X -- text`).
 */
export function hmpCommandNames(help: string, helpInfo: string): string[] {
  const names = new Set<string>();
  for (const line of help.split(/\r?\n/)) {
    const first = line.split(/\s/)[0] ?? '';
    if (!/^[a-z]/.test(first)) continue;
    const alts = first.split('|');
    names.add(alts.reduce((a, b) => (b.length > a.length ? b : a)));
  }
  for (const line of helpInfo.split(/\r?\n/)) {
    const m = /^info (\S+)/.exec(line);
    if (m) names.add(`info ${m[1]}`);
  }
  return [...names].sort();
}

/** Completes HMP lines from `hmpCommandNames`: whole names, `info X` included. */
export function completeHmp(names: readonly string[], line: string): Completion {
  const text = line.replace(/^\s+/, '');
  return [names.filter((n) => n.startsWith(text)), text];
}
