// GSM8K answer handling shared by the data stages, `evaluate` and `report`: final-answer extraction and scoring.

/** What extraction yields when a text has no `#### <number>`; never equal to a real answer. */
export const INVALID_ANSWER = '[invalid]';

// The original evaluation's pattern, kept character for character so scores stay comparable with the seed.
const FINAL_ANSWER = /#### (\-?[0-9\.\,]+)/;

/**
 * The final answer of a GSM8K-style text: the first `#### <number>` match, stripped, commas removed
 * (`#### 1,000` → `1000`); `[invalid]` when there is none. Like the original, a later `####` never wins.
 */
export function extractAnswer(text: string): string {
  const match = FINAL_ANSWER.exec(text);
  if (!match) return INVALID_ANSWER;
  return match[1]!.trim().replaceAll(',', '');
}

/** Exact match of the extracted answers; an unreadable prediction is never correct. */
export function isCorrect(generated: string, reference: string): boolean {
  const predicted = extractAnswer(generated);
  return predicted !== INVALID_ANSWER && predicted === extractAnswer(reference);
}

/** Non-overlapping occurrences of the pause token in a text decoded with special tokens kept. */
export function countPauses(textWithSpecials: string, pauseToken: string): number {
  if (pauseToken === '') throw new RangeError('countPauses needs a non-empty pause token');
  let count = 0;
  for (let at = textWithSpecials.indexOf(pauseToken); at !== -1; at = textWithSpecials.indexOf(pauseToken, at + pauseToken.length)) {
    count++;
  }
  return count;
}

export interface MeanStd {
  mean: number;
  /** Population standard deviation (divides by n), as numpy's default `std` which the original reports. */
  std: number;
  n: number;
}

/** Mean and population std of per-example scores (1/0 for accuracy); NaN for both when there are none. */
export function meanStd(values: readonly number[]): MeanStd {
  const n = values.length;
  if (n === 0) return { mean: Number.NaN, std: Number.NaN, n };
  const mean = values.reduce((sum, v) => sum + v, 0) / n;
  const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / n;
  return { mean, std: Math.sqrt(variance), n };
}
