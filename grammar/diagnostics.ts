// Diagnostics: every user mistake becomes one of these, never an exception.

/** 1-based line and column, like editors show them; offsets are 0-based into the file text. */
export interface SourceSpan {
  file: string;
  line: number;
  column: number;
  endLine: number;
  endColumn: number;
  offset: number;
  endOffset: number;
}

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  /** Stable code from DIAGNOSTIC_CODES, e.g. `E_UNKNOWN_KIND`. */
  code: string;
  severity: Severity;
  message: string;
  span?: SourceSpan;
  /** Extra lines, e.g. "did you mean `sft`?" or the stages of a cycle. */
  notes?: string[];
}
