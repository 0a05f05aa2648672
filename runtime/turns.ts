// Turns taken in one order and ended in any: async work started in a chosen order reaches one step in that order.

/** One place in the line. */
export interface Turn {
  /** Resolves once every turn taken before this one has ended. */
  readonly ready: Promise<void>;
  /** Ends this turn, so that later ones may go; ending it again does nothing. */
  end(): void;
}

/**
 * The line itself. A turn that waits for something else (another runner's lock) ends early and lets the later ones
 * go first; every turn must end, or the ones after it wait for ever.
 */
export class Turns {
  private last: Promise<void> = Promise.resolve();

  take(): Turn {
    let end!: () => void;
    const ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    const ready = this.last;
    this.last = Promise.all([ready, ended]).then(() => undefined);
    return { ready, end };
  }
}
