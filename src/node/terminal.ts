/**
 * Text for a terminal. The CLI prints names it did not choose — folder and file names of an
 * --images tree, paths, a checkpoint's metadata — and a terminal acts on the control characters
 * in them: an escape sequence can recolour, clear or retitle it, rewrite the line above, or hide
 * text; a carriage return can overwrite a warning. They are dropped at the point of printing.
 */
import { format } from 'node:util';

/**
 * Control characters (C0, DEL and C1), except the tab and the line feed the program's own lines
 * are made of: a line feed in a name can only start a new line of plain text.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export const printable = (text: string) => text.replace(CONTROL, '');

/** Makes console.log/info/warn/error print only printable text, for the rest of the process (a CLI's entry point calls it). */
export function printableConsole(): void {
  for (const name of ['log', 'info', 'warn', 'error'] as const) {
    const print = console[name].bind(console);
    console[name] = (...args: unknown[]) => print(printable(format(...args)));
  }
}
