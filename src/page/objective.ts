/**
 * The page's objective fields: β on the KL term, the KL warm-up, the likelihood and the
 * Gaussian's σ. Like the settings fields (./controls.ts) each is checked as it is typed, with
 * the reason at the input, against the ranges every host shares (src/model/settings.ts). A
 * model's objective is part of its checkpoint (the likelihood in its sizes, β and the warm-up
 * in its run metadata), so a loaded or restored run sets these fields from the file.
 */
import type { Likelihood } from '../model/graph';
import { reasonAfter } from './controls';
import {
  BETA_RANGE,
  betaReason,
  DEFAULT_OBJECTIVE,
  DEFAULT_SIGMA,
  KL_WARMUP_RANGE,
  parseSigma,
  type ObjectiveSettings,
} from '../model/settings';

export interface PageObjective extends ObjectiveSettings {
  /** Absent: Bernoulli, the reference model's. */
  likelihood?: Likelihood;
}

type Field = 'beta' | 'klWarmup' | 'likelihood' | 'sigma';
const FIELDS: Field[] = ['beta', 'klWarmup', 'likelihood', 'sigma'];

export class ObjectiveControls {
  private readonly inputs = {} as Record<Field, HTMLInputElement | HTMLSelectElement>;
  private readonly reasons = {} as Record<Field, HTMLElement>;

  constructor(onChange: () => void) {
    for (const name of FIELDS) {
      this.inputs[name] = document.getElementById(name) as HTMLInputElement | HTMLSelectElement;
      this.reasons[name] = reasonAfter(this.inputs[name]);
      this.inputs[name].addEventListener('input', () => {
        this.read();
        onChange();
      });
    }
    this.set({ ...DEFAULT_OBJECTIVE });
  }

  /** The objective, or null (with each bad field marked) when a field is invalid. */
  read(): PageObjective | null {
    const mark = (name: Field, reason: string) => {
      const input = this.inputs[name];
      input.setCustomValidity(reason);
      input.setAttribute('aria-invalid', String(reason !== ''));
      this.reasons[name].textContent = reason;
      return reason === '';
    };
    const betaText = this.inputs.beta.value.trim();
    const beta = betaText === '' ? NaN : Number(betaText);
    const warmupText = this.inputs.klWarmup.value.trim();
    const klWarmup = Number(warmupText);
    const [min, max] = KL_WARMUP_RANGE;
    const gaussian = this.inputs.likelihood.value === 'gaussian';
    const sigma = parseSigma(this.inputs.sigma.value);
    this.inputs.sigma.disabled = !gaussian || this.inputs.likelihood.disabled;
    const ok = [
      mark('beta', betaReason(beta) ?? ''),
      mark(
        'klWarmup',
        /^\d+$/.test(warmupText) && klWarmup >= min && klWarmup <= max
          ? ''
          : `must be a whole number of steps from ${min} to ${max} (0: no warm-up)`,
      ),
      mark('likelihood', ''),
      mark('sigma', gaussian && typeof sigma === 'object' ? sigma.reason : ''),
    ].every(Boolean);
    if (!ok) return null;
    return {
      beta,
      klWarmup,
      ...(gaussian ? { likelihood: { kind: 'gaussian', sigma: sigma as number | 'learned' } } : {}),
    };
  }

  get valid(): boolean {
    return this.read() !== null;
  }

  set(o: Partial<PageObjective>): void {
    if (o.beta !== undefined) this.inputs.beta.value = String(o.beta);
    if (o.klWarmup !== undefined) this.inputs.klWarmup.value = String(o.klWarmup);
    const l = o.likelihood ?? { kind: 'bernoulli' };
    this.inputs.likelihood.value = l.kind;
    this.inputs.sigma.value =
      l.kind === 'gaussian' ? String(l.sigma) : this.inputs.sigma.value || String(DEFAULT_SIGMA);
    this.read();
  }

  /** While a model exists its objective is its own (a checkpoint records it). */
  setLocked(locked: boolean): void {
    for (const name of FIELDS) this.inputs[name].disabled = locked;
    this.read();
  }
}

/** The β range as the field's hint says it. */
export const BETA_HINT = `${BETA_RANGE[0]} to ${BETA_RANGE[1]}; 1 is the plain VAE`;
