/**
 * QEMU's monitor line editor as of 10.0 (qemu/qemu: util/readline.c): it echoes by redrawing
 * the whole line (cursor left over the old text, the text, ESC[K) and knows ^A ^D ^E ^L ^N
 * ^P ^U ^W, backspace, TAB completion, history, and the ESC[ / ESC O / 0x9b key sequences.
 * Everything is bytes: a UTF-8 character is two or more "characters" to it.
 */

const CMD_BUF_SIZE = 4095;
const MAX_HISTORY = 64;
const MAX_COMPLETIONS = 256;

type EscState = 'norm' | 'esc' | 'csi' | 'ss3';

/** Completions for the text before the cursor, and where in it the completed word starts. */
export interface Completions {
  index: number;
  items: string[];
}

export class Readline {
  readonly #write: (bytes: string) => void;
  readonly #complete: (line: string) => Completions | undefined;
  readonly #prompt: string;
  #buf = '';
  #index = 0;
  #lastBuf = '';
  #lastIndex = 0;
  #esc: EscState = 'norm';
  #escParam = 0;
  readonly #history: string[] = [];
  #histEntry = -1;
  #completionIndex = 0;

  /**
   * @param write receives output as byte strings, with `\n` line ends (the monitor adds `\r`)
   * @param complete the monitor's completion finder (monitor_find_completion)
   */
  constructor(
    write: (bytes: string) => void,
    complete: (line: string) => Completions | undefined,
    prompt = '(qemu) ',
  ) {
    this.#write = write;
    this.#complete = complete;
    this.#prompt = prompt;
  }

  /** readline_show_prompt(): prints the prompt and forgets what was drawn. */
  showPrompt(): void {
    this.#write(this.#prompt);
    this.#lastIndex = 0;
    this.#lastBuf = '';
    this.#esc = 'norm';
  }

  /**
   * readline_handle_byte(): edits the line for one input byte and echoes the change.
   * @returns the command line when the byte was Enter (CR or LF), else undefined
   */
  handleByte(ch: number): string | undefined {
    switch (this.#esc) {
      case 'norm': {
        const line = this.#normalByte(ch);
        if (line !== undefined) return line;
        break;
      }
      case 'esc':
        this.#escByte(ch);
        break;
      case 'csi':
        this.#csiByte(ch);
        break;
      case 'ss3':
        if (ch === 0x46) this.#index = this.#buf.length;
        else if (ch === 0x48) this.#index = 0;
        this.#esc = 'norm';
        break;
    }
    this.#update();
    return undefined;
  }

  /**
   * A byte outside an escape sequence: a control key (the emacs bindings QEMU has) or a
   * character to insert.
   * @returns the command line at Enter, without redrawing (QEMU redraws after running it).
   */
  #normalByte(ch: number): string | undefined {
    switch (ch) {
      case 1:
        this.#index = 0;
        break;
      case 4:
        this.#deleteChar();
        break;
      case 5:
        this.#index = this.#buf.length;
        break;
      case 9:
        this.#completion();
        break;
      case 12:
        this.#write('\x1b[2J\x1b[1;1H');
        this.showPrompt();
        break;
      case 10:
      case 13: {
        const line = this.#buf;
        this.#histAdd(line);
        this.#write('\n');
        this.#buf = '';
        this.#index = 0;
        this.#lastBuf = '';
        this.#lastIndex = 0;
        // QEMU redraws after running the command, which prints nothing here.
        return line;
      }
      case 14:
        this.#downChar();
        break;
      case 16:
        this.#upChar();
        break;
      case 21:
        this.#buf = this.#buf.slice(this.#index);
        this.#index = 0;
        break;
      case 23:
        this.#backWord();
        break;
      case 27:
        this.#esc = 'esc';
        break;
      case 8:
      case 127:
        if (this.#index > 0) {
          this.#index--;
          this.#deleteChar();
        }
        break;
      case 155:
        this.#esc = 'csi';
        break;
      default:
        if (ch >= 32) this.#insert(String.fromCharCode(ch));
    }
    return undefined;
  }

  /** The byte after ESC: `[` starts a CSI sequence, `O` an SS3 one; anything else ends it. */
  #escByte(ch: number): void {
    if (ch === 0x5b) {
      this.#esc = 'csi';
      this.#escParam = 0;
    } else if (ch === 0x4f) {
      this.#esc = 'ss3';
      this.#escParam = 0;
    } else this.#esc = 'norm';
  }

  /** A byte of a CSI sequence: parameter digits, then the final byte (arrows, Home, Del, End). */
  #csiByte(ch: number): void {
    if (ch >= 0x30 && ch <= 0x39) {
      // Only the digits of a parameter keep the sequence going.
      this.#escParam = this.#escParam * 10 + (ch - 0x30);
      return;
    }
    switch (String.fromCharCode(ch)) {
      case 'A':
      case 'F':
        this.#upChar();
        break;
      case 'B':
      case 'E':
        this.#downChar();
        break;
      case 'D':
        if (this.#index > 0) this.#index--;
        break;
      case 'C':
        if (this.#index < this.#buf.length) this.#index++;
        break;
      case '~':
        if (this.#escParam === 1) this.#index = 0;
        else if (this.#escParam === 3) this.#deleteChar();
        else if (this.#escParam === 4) this.#index = this.#buf.length;
        break;
    }
    this.#esc = 'norm';
  }

  /** readline_update(): redraw the line if it changed, then move the cursor. */
  #update(): void {
    let s = '';
    if (this.#buf !== this.#lastBuf) {
      s += '\x1b[D'.repeat(this.#lastIndex);
      s += `${this.#buf}\x1b[K`;
      this.#lastBuf = this.#buf;
      this.#lastIndex = this.#buf.length;
    }
    if (this.#index !== this.#lastIndex) {
      const delta = this.#index - this.#lastIndex;
      s += (delta > 0 ? '\x1b[C' : '\x1b[D').repeat(Math.abs(delta));
      this.#lastIndex = this.#index;
    }
    if (s) this.#write(s);
  }

  #insert(c: string): void {
    if (this.#index < CMD_BUF_SIZE && this.#buf.length < CMD_BUF_SIZE) {
      this.#buf = this.#buf.slice(0, this.#index) + c + this.#buf.slice(this.#index);
      this.#index++;
    }
  }

  #deleteChar(): void {
    if (this.#index < this.#buf.length)
      this.#buf = this.#buf.slice(0, this.#index) + this.#buf.slice(this.#index + 1);
  }

  /** ^W: back over spaces, then over the word before them. */
  #backWord(): void {
    if (this.#index === 0 || this.#index > this.#buf.length) return;
    const space = (c: string | undefined) => c !== undefined && ' \t\n\v\f\r'.includes(c);
    let start = this.#index - 1;
    while (start > 0 && space(this.#buf[start])) start--;
    while (start > 0) {
      if (space(this.#buf[start])) {
        start++;
        break;
      }
      start--;
    }
    if (start < this.#index) {
      this.#buf = this.#buf.slice(0, start) + this.#buf.slice(this.#index);
      this.#index = start;
    }
  }

  #upChar(): void {
    if (this.#histEntry === 0) return;
    if (this.#histEntry === -1) this.#histEntry = this.#history.length;
    this.#histEntry--;
    if (this.#histEntry >= 0) {
      this.#buf = this.#history[this.#histEntry]!;
      this.#index = this.#buf.length;
    }
  }

  #downChar(): void {
    if (this.#histEntry === -1) return;
    if (this.#histEntry < MAX_HISTORY - 1 && this.#histEntry + 1 < this.#history.length) {
      this.#histEntry++;
      this.#buf = this.#history[this.#histEntry]!;
    } else {
      this.#buf = '';
      this.#histEntry = -1;
    }
    this.#index = this.#buf.length;
  }

  /** readline_hist_add(): a repeated line moves to the end; the oldest falls off at 64. */
  #histAdd(line: string): void {
    if (line === '') return;
    let at = -1;
    if (this.#histEntry !== -1 && this.#history[this.#histEntry] === line) at = this.#histEntry;
    else at = this.#history.indexOf(line);
    if (at >= 0) this.#history.splice(at, 1);
    else if (this.#history.length === MAX_HISTORY) this.#history.shift();
    this.#history.push(line);
    this.#histEntry = -1;
  }

  /** readline_completion(): one match is inserted (plus a space), several are listed. */
  #completion(): void {
    const found = this.#complete(this.#buf.slice(0, this.#index));
    if (found) this.#completionIndex = found.index;
    const items: string[] = [];
    for (const item of found?.items ?? []) {
      if (items.length < MAX_COMPLETIONS && !items.includes(item)) items.push(item);
    }
    if (items.length === 0) return;
    const first = items[0]!;
    if (items.length === 1) {
      for (let i = this.#completionIndex; i < first.length; i++) this.#insert(first[i]!);
      if (first.length > 0 && !first.endsWith('/')) this.#insert(' ');
      return;
    }
    items.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.#write('\n');
    let maxWidth = 0;
    let maxPrefix = 0;
    items.forEach((item, i) => {
      if (i === 0) maxPrefix = item.length;
      else {
        if (item.length < maxPrefix) maxPrefix = item.length;
        for (let j = 0; j < maxPrefix; j++) if (item[j] !== items[0]![j]) maxPrefix = j;
      }
      if (item.length > maxWidth) maxWidth = item.length;
    });
    for (let i = this.#completionIndex; i < maxPrefix; i++) this.#insert(items[0]![i]!);
    maxWidth = Math.min(80, Math.max(10, maxWidth + 2));
    const cols = Math.floor(80 / maxWidth);
    let s = '';
    items.forEach((item, i) => {
      s += item.padEnd(maxWidth);
      if ((i + 1) % cols === 0 || i === items.length - 1) s += '\n';
    });
    this.#write(s);
    this.showPrompt();
  }
}
