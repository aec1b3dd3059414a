/**
 * The page's state, read-only, as `window.vaePage`: for the end-to-end tests and the curious
 * (`vaePage` in the console). It reads the page's one state object; nothing here writes to it.
 */
import type { App, Phase } from './app';
import type { LossHistory } from './charts';

export interface PageState {
  readonly phase: Phase;
  /** Completed epochs of the current model (0 without one). */
  readonly epochsDone: number;
  /** Training rate of the current run (pauses and test passes excluded). */
  readonly imagesPerSecond: number;
  /** Images per second of each epoch completed since the page loaded, by the trainer's clock. */
  readonly epochRates: number[];
  /** GPU submits of the page's runtime, as it counts them at queue.submit. */
  readonly submits: number;
  /** Every epoch completed since the page loaded: the driver's train and test losses. */
  readonly epochReports: { epoch: number; trainLoss: number; testLoss: number }[];
  readonly lossHistory: LossHistory;
}

declare global {
  interface Window {
    vaePage?: PageState;
  }
}

export function installTestHook({ state, progress, chart }: App): void {
  window.vaePage = {
    get phase() {
      return state.phase;
    },
    get epochsDone() {
      return state.session?.epochsDone ?? 0;
    },
    get imagesPerSecond() {
      return progress.meter.rate;
    },
    get epochRates() {
      return [...state.epochRates];
    },
    get submits() {
      return state.gpu?.counters().submits ?? 0;
    },
    get epochReports() {
      return [...state.epochReports];
    },
    get lossHistory() {
      return chart.data;
    },
  };
}
