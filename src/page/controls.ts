/**
 * The run's settings fields. Each is checked as it is typed: an invalid value is marked at
 * the input with the reason (and through setCustomValidity for assistive technology), and
 * the page refuses to start until every field is valid.
 */
import { DEFAULT_SETTINGS as D, lrReason, parseHidden, SETTING_RANGES as R, type RunSettings } from '../model/settings';

/** β and its warm-up are the objective's fields (./objective.ts), not these. */
export type Settings = Omit<RunSettings, 'beta' | 'klWarmup'>;

type Reason = { reason: string };
type Parse<T> = (text: string) => T | Reason;
const isReason = (v: unknown): v is Reason => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Why `text` is not a whole number from `min` to `max` ('' when it is): every integer field's check and wording. */
export function integerReason(text: string, min: number, max: number, why = ''): string {
  const v = Number(text);
  return /^\s*\d+\s*$/.test(text) && Number.isSafeInteger(v) && v >= min && v <= max
    ? ''
    : `must be a whole number from ${min} to ${max}${why}`;
}

function integer(min: number, max: number, why = ''): Parse<number> {
  return (text) => {
    const reason = integerReason(text, min, max, why);
    return reason ? { reason } : Number(text);
  };
}

const learningRate: Parse<number> = (text) => {
  const v = text.trim() === '' ? NaN : Number(text);
  const reason = lrReason(v);
  return reason ? { reason } : v;
};

const widths: Parse<number[]> = (text) => parseHidden(text);

/** Defaults are the reference program's; ranges and parsers are every host's (src/model/settings.ts). */
const FIELDS: { [K in keyof Settings]: { parse: Parse<Settings[K]>; initial: Settings[K] } } = {
  epochs: { parse: integer(...R.epochs), initial: D.epochs },
  batchSize: { parse: integer(...R.batchSize), initial: D.batchSize },
  lr: { parse: learningRate, initial: D.lr },
  hidden: { parse: widths, initial: [...D.hidden] },
  latent: { parse: integer(2, R.latent[1], ' (the explorer needs two axes)'), initial: D.latent },
  seed: { parse: integer(...R.seed), initial: D.seed },
};

/** A value as its field shows it ("512,256" for widths). */
const format = (value: number | readonly number[]) => (Array.isArray(value) ? value.join(',') : String(value));

/** Every settings field, in the page's order. */
export const SETTING_NAMES = Object.keys(FIELDS) as (keyof Settings)[];

export { DEFAULT_SETTINGS } from '../model/settings';

/**
 * The element after a field's input (or select) where its check says what is wrong: `#<id>-reason`,
 * made here for every checked field so the page's markup holds only the fields themselves.
 */
export function reasonAfter(input: HTMLElement): HTMLElement {
  const reason = document.createElement('span');
  reason.className = 'reason';
  reason.id = `${input.id}-reason`;
  input.after(reason);
  return reason;
}

export class Controls {
  private readonly inputs = {} as Record<keyof Settings, HTMLInputElement>;
  private readonly reasons = {} as Record<keyof Settings, HTMLElement>;
  /** Why a field does not apply to the chosen model ('' or absent: it does); see setApplies. */
  private readonly notApplied: Partial<Record<keyof Settings, string>> = {};
  private locked = false;

  /** `onChange` runs after every edit, so the caller can enable or disable Start. */
  constructor(onChange: () => void) {
    for (const name of SETTING_NAMES) {
      this.inputs[name] = document.getElementById(name) as HTMLInputElement;
      this.reasons[name] = reasonAfter(this.inputs[name]);
      this.inputs[name].value = format(FIELDS[name].initial);
      this.inputs[name].addEventListener('input', () => {
        this.check(name);
        onChange();
      });
    }
  }

  /** Marks the field and returns its value, or null when it is invalid. */
  private check<K extends keyof Settings>(name: K): Settings[K] | null {
    const input = this.inputs[name];
    const result = FIELDS[name].parse(input.value);
    const why = this.notApplied[name];
    if (why) {
      // A field the model does not use blocks nothing: its value (or the default) rides along unused.
      input.setCustomValidity('');
      input.setAttribute('aria-invalid', 'false');
      this.reasons[name].textContent = `not used: ${why}`;
      this.reasons[name].classList.add('why');
      return isReason(result) ? FIELDS[name].initial : result;
    }
    this.reasons[name].classList.remove('why');
    const reason = isReason(result) ? result.reason : '';
    input.setCustomValidity(reason);
    input.setAttribute('aria-invalid', String(reason !== ''));
    this.reasons[name].textContent = reason;
    return isReason(result) ? null : result;
  }

  /**
   * Why `value` is not acceptable in the field `name`, or '' when it is: the same ranges
   * applied to what a checkpoint file or browser storage brings in.
   */
  reasonAgainst(name: keyof Settings, value: unknown): string {
    const wanted = name === 'hidden' ? 'a list of widths' : 'a number';
    const ok =
      name === 'hidden' ? Array.isArray(value) && value.every((v) => typeof v === 'number') : typeof value === 'number';
    if (!ok) return `must be ${wanted}, not ${value === undefined ? 'missing' : JSON.stringify(value)}`;
    const result = FIELDS[name].parse(format(value as number | number[]));
    return isReason(result) ? result.reason : '';
  }

  get valid(): boolean {
    return SETTING_NAMES.every((n) => this.check(n) !== null);
  }

  /** The settings, or null (with every bad field marked) when any is invalid. */
  read(): Settings | null {
    const values: Partial<Record<keyof Settings, unknown>> = {};
    let ok = true;
    for (const name of SETTING_NAMES) {
      const v = this.check(name);
      if (v === null) ok = false;
      else values[name] = v;
    }
    return ok ? (values as Settings) : null;
  }

  set(values: Partial<Settings>): void {
    for (const name of SETTING_NAMES) {
      const value = values[name];
      if (value !== undefined) {
        this.inputs[name].value = format(value);
        this.check(name);
      }
    }
  }

  /** While a model exists its shape and optimiser are fixed; only the epoch target stays editable. */
  setLocked(locked: boolean): void {
    this.locked = locked;
    for (const name of SETTING_NAMES)
      if (name !== 'epochs') this.inputs[name].disabled = locked || !!this.notApplied[name];
  }

  /**
   * Marks a field that the chosen model does not use (`why`, shown beside it), or uses again
   * (''): it is disabled, and its value is not checked.
   */
  setApplies(name: 'hidden' | 'latent', why: string): void {
    this.notApplied[name] = why;
    this.inputs[name].disabled = this.locked || why !== '';
    this.inputs[name].title = why ? `Not used: ${why}` : '';
    this.check(name);
  }
}
