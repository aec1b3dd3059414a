/**
 * The run's settings fields. Each is checked as it is typed: an invalid value is marked at
 * the input with the reason (and through setCustomValidity for assistive technology), and
 * the page refuses to start until every field is valid.
 */
import { DEFAULT_SETTINGS as D, SETTING_RANGES as R, type RunSettings } from '../model/settings';

export type Settings = RunSettings;

type Parse = (text: string) => number | { reason: string };

function integer(min: number, max: number, why = ''): Parse {
  return (text) => {
    const v = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(v) || v < min || v > max) {
      return { reason: `must be a whole number from ${min} to ${max}${why}` };
    }
    return v;
  };
}

// Stricter than the CLI's bound (LR_MAX): in the page a learning rate above 1 is a typo.
const positive: Parse = (text) => {
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v <= 0 || v > 1) return { reason: 'must be a number above 0 and at most 1, e.g. 0.001 or 1e-3' };
  return v;
};

/** Defaults are the reference program's; ranges are every host's (src/model/settings.ts). */
const FIELDS: Record<keyof Settings, { parse: Parse; initial: number }> = {
  epochs: { parse: integer(...R.epochs), initial: D.epochs },
  batchSize: { parse: integer(...R.batchSize), initial: D.batchSize },
  lr: { parse: positive, initial: D.lr },
  hidden: { parse: integer(...R.hidden), initial: D.hidden },
  latent: { parse: integer(2, R.latent[1], ' (the explorer needs two axes)'), initial: D.latent },
  seed: { parse: integer(...R.seed), initial: D.seed },
};

/** Every settings field, in the page's order. */
export const SETTING_NAMES = Object.keys(FIELDS) as (keyof Settings)[];

export { DEFAULT_SETTINGS } from '../model/settings';

export class Controls {
  private readonly inputs = {} as Record<keyof Settings, HTMLInputElement>;
  private readonly reasons = {} as Record<keyof Settings, HTMLElement>;

  /** `onChange` runs after every edit, so the caller can enable or disable Start. */
  constructor(onChange: () => void) {
    for (const name of SETTING_NAMES) {
      this.inputs[name] = document.getElementById(name) as HTMLInputElement;
      this.reasons[name] = document.getElementById(`${name}-reason`)!;
      this.inputs[name].value = String(FIELDS[name].initial);
      this.inputs[name].addEventListener('input', () => {
        this.check(name);
        onChange();
      });
    }
  }

  /** Marks the field and returns its value, or null when it is invalid. */
  private check(name: keyof Settings): number | null {
    const input = this.inputs[name];
    const result = FIELDS[name].parse(input.value);
    const reason = typeof result === 'number' ? '' : result.reason;
    input.setCustomValidity(reason);
    input.setAttribute('aria-invalid', String(reason !== ''));
    this.reasons[name].textContent = reason;
    return typeof result === 'number' ? result : null;
  }

  /**
   * Why `value` is not acceptable in the field `name`, or '' when it is: the same ranges
   * applied to what a checkpoint file or browser storage brings in.
   */
  reasonAgainst(name: keyof Settings, value: unknown): string {
    if (typeof value !== 'number') return `must be a number, not ${value === undefined ? 'missing' : typeof value}`;
    const result = FIELDS[name].parse(String(value));
    return typeof result === 'number' ? '' : result.reason;
  }

  get valid(): boolean {
    return SETTING_NAMES.every((n) => this.check(n) !== null);
  }

  /** The settings, or null (with every bad field marked) when any is invalid. */
  read(): Settings | null {
    const values = {} as Settings;
    let ok = true;
    for (const name of SETTING_NAMES) {
      const v = this.check(name);
      if (v === null) ok = false;
      else values[name] = v;
    }
    return ok ? values : null;
  }

  set(values: Partial<Settings>): void {
    for (const name of SETTING_NAMES) {
      if (values[name] !== undefined) {
        this.inputs[name].value = String(values[name]);
        this.check(name);
      }
    }
  }

  /** While a model exists its shape and optimiser are fixed; only the epoch target stays editable. */
  setLocked(locked: boolean): void {
    for (const name of SETTING_NAMES) if (name !== 'epochs') this.inputs[name].disabled = locked;
  }
}
