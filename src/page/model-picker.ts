/**
 * The model picker: one of the presets (src/model/spec.ts's list, so a preset added there shows
 * up here), or "custom JSON", a spec typed or pasted into the text area and checked as it is
 * typed: parseSpec's message, which names the layer and the shapes that disagree, is shown
 * beside it, and Start stays disabled until it is a model this page can train.
 *
 * The hidden widths shape only the mlp preset; the latent size is every preset's (modelSizes
 * takes it for each); a custom spec names its own. Fields that do not apply are disabled,
 * saying why (./controls.ts setApplies).
 */
import { classesOf, type VaeSizes } from '../model/graph';
import { LAYERS } from '../model/layers';
import { DEFAULT_PRESET, modelSizes, parseSpec, PRESETS, type ModelSpec } from '../model/spec';
import { DEFAULT_INPUT_SHAPE } from '../model/settings';
import { reasonAfter } from './controls';

/** What the picker holds: a preset's name, or a spec. */
export type ModelChoice = string | ModelSpec;

/** The select's value for a spec in the text area. */
const CUSTOM = 'custom';

/** A spec as the text area shows it: one field a line, one layer a line. */
export function specText(spec: ModelSpec): string {
  const lines = Object.entries(spec).map(([key, value]) =>
    Array.isArray(value) && value.length > 0 && Array.isArray(value[0])
      ? `"${key}": [\n    ${value.map((layer) => JSON.stringify(layer)).join(',\n    ')}\n  ]`
      : `"${key}": ${JSON.stringify(value)}`,
  );
  return `{\n  ${lines.join(',\n  ')}\n}`;
}

/**
 * How the picker shows a model it did not make (a loaded or restored checkpoint): its preset when
 * a preset at these images' shape, latent size, classes and likelihood gives exactly its spec,
 * else its spec (custom JSON). A checkpoint without a spec is the mlp preset.
 */
export function choiceOf(sizes: VaeSizes, input: readonly number[]): ModelChoice {
  if (!sizes.spec) return 'mlp';
  const json = JSON.stringify(sizes.spec);
  for (const preset of PRESETS) {
    if (preset === 'mlp') continue;
    try {
      const made = modelSizes(preset, {
        input,
        latent: sizes.L,
        classes: classesOf(sizes),
        likelihood: sizes.likelihood ?? { kind: 'bernoulli' },
      });
      if (JSON.stringify(made.spec) === json) return preset;
    } catch {
      // not this preset (its shapes do not fit these images)
    }
  }
  return sizes.spec;
}

/** A short name for a model: its preset's, "custom" for a spec of its own. */
export function choiceName(choice: ModelChoice): string {
  return typeof choice === 'string' ? choice : 'custom';
}

export class ModelPicker {
  private readonly select: HTMLSelectElement;
  private readonly text: HTMLTextAreaElement;
  private readonly row: HTMLElement;
  private readonly reason: HTMLElement;
  private readonly presetReason: HTMLElement;

  /**
   * `onChange` runs after every edit; `context` gives the chosen dataset's image shape (null
   * while none is known) and the latent field's value, for the spec a switch to custom JSON starts from.
   */
  constructor(
    onChange: () => void,
    private readonly context: () => { input: readonly number[] | null; latent: number },
  ) {
    this.select = document.getElementById('model') as HTMLSelectElement;
    this.text = document.getElementById('model-json') as HTMLTextAreaElement;
    this.row = document.getElementById('model-json-row')!;
    for (const preset of PRESETS)
      this.select.add(new Option(preset === DEFAULT_PRESET ? `${preset} (default)` : preset, preset));
    this.select.add(new Option('custom JSON', CUSTOM));
    this.select.value = DEFAULT_PRESET;
    document.getElementById('model-kinds')!.textContent = Object.keys(LAYERS).join(', ');
    this.reason = reasonAfter(this.text);
    this.presetReason = reasonAfter(this.select);
    let last: string = DEFAULT_PRESET;
    this.select.addEventListener('change', () => {
      if (this.select.value === CUSTOM && this.text.value.trim() === '') this.text.value = this.startingText(last);
      if (this.select.value !== CUSTOM) last = this.select.value;
      this.read();
      onChange();
    });
    this.text.addEventListener('input', () => {
      this.read();
      onChange();
    });
    this.read();
  }

  /** The spec of the last preset picked (the first preset with a spec, for the mlp) at the dataset's shape, to edit. */
  private startingText(preset: string): string {
    const { input, latent } = this.context();
    for (const name of [preset, ...PRESETS]) {
      try {
        const { spec } = modelSizes(name, { input: input ?? DEFAULT_INPUT_SHAPE, latent });
        if (spec) return specText(spec);
      } catch {
        // that preset does not fit these images: try the next
      }
    }
    return '';
  }

  /** Whether a custom spec is chosen (the text area shown). */
  get custom(): boolean {
    return this.select.value === CUSTOM;
  }

  /**
   * The chosen model, or null when it is not one this page can train: a spec's reason is shown
   * beside the text area, a preset's (one that does not fit the dataset's images) beside the select.
   */
  read(): ModelChoice | null {
    this.row.hidden = !this.custom;
    const result = this.custom ? this.parse(this.text.value) : this.select.value;
    const reason = typeof result === 'object' && 'reason' in result ? result.reason : '';
    const presetReason = this.custom ? '' : this.presetMisfit(this.select.value);
    for (const [field, span, why] of [
      [this.text, this.reason, reason],
      [this.select, this.presetReason, presetReason],
    ] as const) {
      field.setCustomValidity(why);
      field.setAttribute('aria-invalid', String(why !== ''));
      span.textContent = why;
    }
    return reason || presetReason ? null : (result as ModelChoice);
  }

  /** Why `preset` cannot be made for the dataset's images ('' when it can, or when they are not known yet); the mlp's fields check its own. */
  private presetMisfit(preset: string): string {
    const { input, latent } = this.context();
    if (preset === 'mlp' || !input) return '';
    try {
      modelSizes(preset, { input, latent });
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  }

  get valid(): boolean {
    return this.read() !== null;
  }

  /** The text as a spec for the chosen dataset's images, or why it is not one. */
  private parse(text: string): ModelSpec | { reason: string } {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return { reason: `not JSON: ${(e as Error).message}` };
    }
    try {
      const spec = parseSpec(value);
      if (spec.latent < 2) return { reason: `its latent size is ${spec.latent}: the explorer needs at least two axes` };
      const { input } = this.context();
      // The images' shape against the spec's input, by the one path every host takes (classes are the Conditional box's, checked at Start).
      if (input) modelSizes(spec, { input, latent: spec.latent, classes: spec.classes });
      return spec;
    } catch (e) {
      return { reason: (e as Error).message };
    }
  }

  /** Shows `choice` (a session's model): its preset, or its spec as custom JSON. */
  set(choice: ModelChoice): void {
    if (typeof choice === 'string' && (PRESETS as readonly string[]).includes(choice)) {
      this.select.value = choice;
    } else {
      this.select.value = CUSTOM;
      this.text.value = typeof choice === 'string' ? choice : specText(choice);
    }
    this.read();
  }

  /** Why the hidden widths and the latent size do not apply to the chosen model ('' where they do). */
  fieldsWhy(): { hidden: string; latent: string } {
    const value = this.select.value;
    return {
      hidden: value === 'mlp' ? '' : `the ${value === CUSTOM ? "spec's" : `${value} preset's`} layers give its widths`,
      latent: value === CUSTOM ? 'the spec\'s "latent" gives it' : '',
    };
  }

  /** While a model exists its layers are fixed. */
  setLocked(locked: boolean): void {
    this.select.disabled = locked;
    this.text.readOnly = locked;
  }
}
