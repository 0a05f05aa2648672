// What the text around a position is, from tokens alone: it must work on the half-typed, unparsable text of an editor.
import type { IToken } from 'chevrotain';
import { tokenize } from '../grammar/lexer.ts';
import * as T from '../grammar/tokens.ts';

/** One open bracket around the position, innermost last. */
export type Frame =
  /** A stage's `( ... )`: input names and references. */
  | { type: 'inputs'; kind: string; names: string[] }
  /** A stage's `{ ... }` (path []) or an object inside it (path of keys from the params block). */
  | { type: 'params'; kind: string; path: string[]; keys: string[] }
  /** Any other object, e.g. a `let`'s value. */
  | { type: 'object'; keys: string[] }
  /** A `for each` body. */
  | { type: 'block' }
  /** `selects`: the stage of a selector `NAME[...]` in a stage's inputs. */
  | { type: 'list'; selects: string | null }
  | { type: 'paren' };

/** What the position is for; `prefix` is the part of the name typed so far (empty between names). */
export type Place =
  | { type: 'statement' }
  | { type: 'kind' }
  | { type: 'param'; kind: string; path: string[]; present: string[] }
  | { type: 'input'; kind: string; present: string[] }
  | { type: 'reference' }
  /** A variable of the selected stage's loop goes here (or `*` right after the `[`). */
  | { type: 'selector'; stage: string; star: boolean }
  | { type: 'value'; kind: string | null; path: string[] }
  | { type: 'none' };

export interface Cursor {
  place: Place;
  prefix: string;
  /** The name token under the position, if any (for hover and definition). */
  word: IToken | null;
  /** The frames around the position. */
  frames: Frame[];
}

function isName(t: IToken | undefined): boolean {
  return t !== undefined && (t.tokenType === T.Identifier || t.tokenType.LONGER_ALT === T.Identifier);
}

/** The string text of a key token: a name, or a quoted key (StringStart StringText StringEnd). */
function keyBefore(tokens: IToken[], colon: number): string | null {
  const prev = tokens[colon - 1];
  if (isName(prev)) return prev!.image;
  if (prev?.tokenType === T.StringEnd && tokens[colon - 2]?.tokenType === T.StringText) return tokens[colon - 2]!.image;
  return null;
}

/** Whether the position lies inside a comment or a string literal (no completions there). */
function inCommentOrString(text: string, offset: number, tokens: IToken[]): boolean {
  const open: ('string' | 'interpolation')[] = [];
  for (const t of tokens) {
    if (t.startOffset >= offset) break;
    if (t.tokenType === T.StringStart) open.push('string');
    else if (t.tokenType === T.InterpStart || t.tokenType === T.LCurlyNested) open.push('interpolation');
    else if (t.tokenType === T.StringEnd || t.tokenType === T.RCurlyNested) open.pop();
  }
  if (open.at(-1) === 'string') return true;
  const line = text.slice(text.lastIndexOf('\n', offset - 1) + 1, offset);
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    else if (ch === '#' && !quoted) return true;
  }
  return false;
}

const OPENERS = new Set<unknown>([T.LCurly, T.LCurlyNested, T.InterpStart, T.LBracket, T.LParen]);
const CLOSERS = new Set<unknown>([T.RCurly, T.RCurlyNested, T.RBracket, T.RParen]);

/** Tokens after which a value is still to come: operators, openers, separators. */
const EXPECTS_VALUE = new Set<unknown>([
  T.Colon, T.Comma, T.Equals, T.LBracket, T.LParen, T.EqEq, T.NotEq, T.LtEq, T.GtEq, T.Lt, T.Gt, T.Plus, T.Minus, T.Star,
  T.Slash, T.Percent, T.Not, T.And, T.Or, T.If, T.Then, T.Else, T.In, T.Where, T.Named, T.InterpStart,
]);

/**
 * The brackets open before a token, kept while the tokens are walked in order: `step(tokens, i)` takes in `tokens[i]`
 * (it looks back at the tokens before it, never ahead).
 */
class FrameWalker {
  readonly frames: Frame[] = [];
  // A stage header seen and not yet opened: `stage NAME = KIND` waiting for its `(` or `{`.
  private header: string | null = null;
  private loopHeader = false;
  private afterInputs: string | null = null;

  step(tokens: IToken[], i: number): void {
    const t = tokens[i]!;
    const frames = this.frames;
    const top = frames.at(-1);
    // A new statement ends a stage header that never opened its block.
    if (t.tokenType === T.Stage || t.tokenType === T.Let || t.tokenType === T.For || t.tokenType === T.Include) {
      this.header = null;
      this.afterInputs = null;
    }
    if (isName(t) && tokens[i - 1]?.tokenType === T.Equals && tokens[i - 2] && isName(tokens[i - 2]) && tokens[i - 3]?.tokenType === T.Stage) {
      this.header = t.image;
      return;
    }
    if (t.tokenType === T.For) this.loopHeader = true;
    // A `${` is closed by a `}` like a block: it must count as an opener, or its `}` would close the block around it.
    if (t.tokenType === T.InterpStart) {
      frames.push({ type: 'paren' });
      return;
    }
    if (t.tokenType === T.LParen) {
      frames.push(this.header !== null ? { type: 'inputs', kind: this.header, names: [] } : { type: 'paren' });
      this.afterInputs = null;
      return;
    }
    if (t.tokenType === T.RParen) {
      const closed = frames.pop();
      if (closed?.type === 'inputs') this.afterInputs = closed.kind;
      return;
    }
    if (t.tokenType === T.LCurly || t.tokenType === T.LCurlyNested) {
      const kind = this.header ?? this.afterInputs;
      if (kind !== null) frames.push({ type: 'params', kind, path: [], keys: [] });
      else if (this.loopHeader) frames.push({ type: 'block' });
      else {
        const key = tokens[i - 1]?.tokenType === T.Colon ? keyBefore(tokens, i - 1) : null;
        frames.push(top?.type === 'params' && key !== null ? { type: 'params', kind: top.kind, path: [...top.path, key], keys: [] } : { type: 'object', keys: [] });
      }
      this.header = null;
      this.afterInputs = null;
      this.loopHeader = false;
      return;
    }
    if (t.tokenType === T.RCurly || t.tokenType === T.RCurlyNested || t.tokenType === T.RBracket) {
      frames.pop();
      return;
    }
    if (t.tokenType === T.LBracket) {
      frames.push({ type: 'list', selects: top?.type === 'inputs' && isName(tokens[i - 1]) ? tokens[i - 1]!.image : null });
      return;
    }
    if (t.tokenType === T.Colon && top) {
      const key = keyBefore(tokens, i);
      if (key !== null && (top.type === 'params' || top.type === 'object')) top.keys.push(key);
      if (key !== null && top.type === 'inputs') top.names.push(key);
    }
  }
}

/**
 * Walks the tokens before `offset` keeping the stack of open brackets, then says what belongs at `offset`.
 * A name token that ends at or contains the offset is the word being typed (its text up to the offset is the prefix).
 */
export function cursorAt(text: string, offset: number): Cursor {
  const tokens = tokenize(text, '<editor>', 0).tokens;
  const under = tokens.find((t) => isName(t) && t.startOffset <= offset && offset <= (t.endOffset ?? t.startOffset) + 1) ?? null;
  const before = tokens.filter((t) => t.startOffset < (under ? under.startOffset : offset));
  const prefix = under ? text.slice(under.startOffset, offset) : '';
  const walker = new FrameWalker();
  for (let i = 0; i < before.length; i++) walker.step(before, i);
  const frames = walker.frames;
  const place = (): Place => {
    if (inCommentOrString(text, offset, tokens)) return { type: 'none' };
    const last = before.at(-1);
    const top = frames.at(-1);
    if (last?.tokenType === T.Equals && isName(before.at(-2)) && before.at(-3)?.tokenType === T.Stage) return { type: 'kind' };
    if (top?.type === 'list' && top.selects !== null && (last?.tokenType === T.LBracket || last?.tokenType === T.Comma)) {
      return { type: 'selector', stage: top.selects, star: last.tokenType === T.LBracket };
    }
    if (top?.type === 'inputs') {
      if (last?.tokenType === T.LParen || last?.tokenType === T.Comma) return { type: 'input', kind: top.kind, present: top.names };
      if (last?.tokenType === T.Colon) return { type: 'reference' };
      return { type: 'none' };
    }
    // In an object a new key starts after `{`, after `,`, or on a new line after a complete value.
    const newLine = last !== undefined && (under?.startLine ?? lineOf(text, offset)) > (last.endLine ?? last.startLine ?? 0);
    const endsValue = last !== undefined && !EXPECTS_VALUE.has(last.tokenType);
    const keyPosition = last?.tokenType === T.LCurly || last?.tokenType === T.LCurlyNested || last?.tokenType === T.Comma || (newLine && endsValue);
    if (top?.type === 'params') {
      if (keyPosition) return { type: 'param', kind: top.kind, path: top.path, present: top.keys };
      if (endsValue) return { type: 'none' };
      return { type: 'value', kind: top.kind, path: [...top.path, lastKey(before) ?? ''] };
    }
    if (top?.type === 'object' && keyPosition) return { type: 'none' };
    if (top === undefined || top.type === 'block') {
      if (last === undefined || last.tokenType === T.LCurly || last.tokenType === T.RCurly || (newLine && endsValue)) return { type: 'statement' };
    }
    // After a complete value comes an operator, and after `stage`, `let` or `for each` a new name: nothing to offer.
    return endsValue ? { type: 'none' } : { type: 'value', kind: null, path: [] };
  };
  return { place: place(), prefix, word: under, frames };
}

/**
 * A name that stands for a declaration. `declaration`: the name a `stage`, `let` or `for each` declares; `stage`: a
 * stage in a stage's inputs; `selector`: the key of `stage[key=…]`, a variable of that stage's loop; `value`: a let or
 * loop variable in an expression (a `"${…}"` too).
 */
export type NameUse =
  | { token: IToken; role: 'declaration' | 'stage' | 'value' }
  | { token: IToken; role: 'selector'; stage: string };

/**
 * Every name of the file that declares or uses a stage, let or loop variable, in the order of the text. Kind names,
 * keys, input names and function names are left out: they name no declaration of the file.
 */
export function namesIn(text: string): NameUse[] {
  const tokens = tokenize(text, '<editor>', 0).tokens;
  const walker = new FrameWalker();
  const out: NameUse[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const prev = tokens[i - 1]?.tokenType;
    const next = tokens[i + 1]?.tokenType;
    const top = walker.frames.at(-1);
    walker.step(tokens, i);
    if (token.tokenType !== T.Identifier) continue;
    if (prev === T.Stage || prev === T.Let || next === T.In) out.push({ token, role: 'declaration' });
    else if (top?.type === 'list' && top.selects !== null && (prev === T.LBracket || prev === T.Comma) && next === T.Equals) {
      out.push({ token, role: 'selector', stage: top.selects });
    } else if (next === T.Colon || next === T.LParen || next === T.Equals) continue; // a key, an input, a kind or function
    else if (prev === T.Equals && tokens[i - 3]?.tokenType === T.Stage) continue; // the kind of `stage NAME = KIND {`
    else if (top?.type === 'inputs') {
      if (prev === T.Colon) out.push({ token, role: 'stage' });
    } else out.push({ token, role: 'value' });
  }
  return out;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** The key of the entry whose value the tokens end in (the last `key:` at the current depth). */
function lastKey(tokens: IToken[]): string | null {
  let depth = 0;
  for (let i = tokens.length - 1; i >= 0; i--) {
    const t = tokens[i]!;
    if (CLOSERS.has(t.tokenType)) depth++;
    else if (OPENERS.has(t.tokenType)) {
      if (depth === 0) return null;
      depth--;
    } else if (depth === 0 && t.tokenType === T.Colon) return keyBefore(tokens, i);
  }
  return null;
}

/** Names a file declares, found from its tokens (so they are known while the file does not parse). */
export interface Declarations {
  /** `loop`: the index in `loops` of the `for each` the stage is declared in; `first`, `last`: the statement's first and last tokens. */
  stages: { name: string; kind: string | null; token: IToken; loop: number | null; first: IToken; last: IToken }[];
  /** `next`: where the statement after the let starts (the end of the text after the last one). */
  lets: { name: string; token: IToken; valueEnd: number; next: number; first: IToken; last: IToken; loop: number | null }[];
  /** Each `for each` from its `for` to its body's `}` (the end of the text while that is not typed yet). */
  loops: { start: number; end: number; first: IToken; last: IToken }[];
  /** `values`: the source of the list after `in`, for hover. */
  loopVars: { name: string; token: IToken; loop: number; values: string }[];
  includes: { path: string; token: IToken }[];
}

const STATEMENT_STARTS = new Set<unknown>([T.Stage, T.Let, T.For, T.Include]);

/** The index of the token that ends the expression starting at `from`: before a `,`, keyword or opener at its depth. */
function expressionEnd(tokens: IToken[], from: number, stops: Set<unknown>): number {
  let d = 0;
  let end = from;
  for (; end < tokens.length; end++) {
    const u = tokens[end]!;
    if (OPENERS.has(u.tokenType) && !(d === 0 && end > from && stops.has(u.tokenType))) d++;
    else if (CLOSERS.has(u.tokenType)) d--;
    if (d < 0 || (d === 0 && end > from && stops.has(u.tokenType))) break;
  }
  return end - 1;
}

export function declarationsOf(text: string): Declarations {
  const tokens = tokenize(text, '<editor>', 0).tokens;
  const out: Declarations = { stages: [], lets: [], loops: [], loopVars: [], includes: [] };
  let depth = 0;
  // The loops whose body is open, with the depth outside their body.
  const open: { loop: number; depth: number }[] = [];
  let inLoopHeader = false;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.tokenType === T.InterpStart) depth++;
    else if (t.tokenType === T.LCurly || t.tokenType === T.LCurlyNested) {
      if (inLoopHeader) open.push({ loop: out.loops.length - 1, depth });
      inLoopHeader = false;
      depth++;
    } else if (t.tokenType === T.RCurly || t.tokenType === T.RCurlyNested) {
      depth--;
      if (open.at(-1)?.depth === depth) Object.assign(out.loops[open.pop()!.loop]!, { end: (t.endOffset ?? t.startOffset) + 1, last: t });
    } else if (t.tokenType === T.For) {
      inLoopHeader = true;
      out.loops.push({ start: t.startOffset, end: text.length, first: t, last: tokens.at(-1)! });
    }
    const next = tokens[i + 1];
    if (t.tokenType === T.Stage && isName(next)) {
      const kind = tokens[i + 2]?.tokenType === T.Equals && isName(tokens[i + 3]) ? tokens[i + 3]!.image : null;
      const last = tokens[expressionEnd(tokens, i + 1, STATEMENT_STARTS)] ?? next!;
      out.stages.push({ name: next!.image, kind, token: next!, loop: open.at(-1)?.loop ?? null, first: t, last });
    } else if (t.tokenType === T.Let && isName(next)) {
      // The value runs to the next statement keyword at this depth; hover shows it.
      const end = expressionEnd(tokens, i + 2, STATEMENT_STARTS);
      const last = tokens[end] ?? next!;
      out.lets.push({ name: next!.image, token: next!, valueEnd: (last.endOffset ?? 0) + 1, next: tokens[end + 1]?.startOffset ?? text.length, first: t, last, loop: open.at(-1)?.loop ?? null });
    } else if (inLoopHeader && isName(t) && next?.tokenType === T.In) {
      // The list runs to the `,` before the next variable, `where`, `named` or the body's `{`.
      const end = expressionEnd(tokens, i + 2, new Set([T.Comma, T.Where, T.Named, T.LCurly, ...STATEMENT_STARTS]));
      const values = end >= i + 2 ? text.slice(tokens[i + 2]!.startOffset, (tokens[end]!.endOffset ?? 0) + 1) : '';
      out.loopVars.push({ name: t.image, token: t, loop: out.loops.length - 1, values });
    } else if (t.tokenType === T.Include && next?.tokenType === T.StringStart && tokens[i + 2]?.tokenType === T.StringText) {
      out.includes.push({ path: tokens[i + 2]!.image, token: tokens[i + 2]! });
    }
  }
  return out;
}

/** The loop variables in scope at `offset`: those of the innermost `for each` around it, header included. */
export function loopVarsAt(decls: Declarations, offset: number): Declarations['loopVars'] {
  for (let loop = decls.loops.length - 1; loop >= 0; loop--) {
    const { start, end } = decls.loops[loop]!;
    if (start <= offset && offset <= end) return decls.loopVars.filter((v) => v.loop === loop);
  }
  return [];
}

/** Whether a name token is a key (`name:`) rather than a use of a name. */
export function isKeyToken(text: string, word: IToken): boolean {
  const after = text.slice((word.endOffset ?? word.startOffset) + 1);
  return /^\s*:/.test(after);
}
