// A file with mistakes in its text: which statements no mistake touches (still expanded and checked) and what the others declared.
import type { CstElement, CstNode, IToken, TokenType } from 'chevrotain';
import {
  Equals, Identifier, Include, InterpStart, LCurly, LCurlyNested, Let, RCurly, RCurlyNested, Stage, StringEnd,
  StringNewline, StringStart, StringText,
} from './tokens.ts';

/**
 * What the statements left out for their mistakes declared. Expansion treats these names as declared but of unknown
 * value: a use of one is not "unknown stage" or "unknown variable", since the broken statement is the cause.
 */
export interface LeftOut {
  names: Set<string>;
  /** A left-out include whose file is unknown, or a file that was not parsed at all: any name may have been declared there. */
  anyName: boolean;
  /**
   * Left-out includes whose path is still plain text (`include "common.pipe` with the quote left open, something
   * after it on the line): the loader reads those files anyway, so that their names are known and the rest checked.
   */
  includes: { path: string; offset: number }[];
}

export function nothingLeftOut(): LeftOut {
  return { names: new Set(), anyName: false, includes: [] };
}

/** Where a mistake is, for finding the statement it belongs to. */
export interface MistakeAt {
  offset: number;
  line: number;
}

function realToken(t: IToken): boolean {
  return !t.isInsertedInRecovery && !Number.isNaN(t.startOffset) && t.tokenType !== StringNewline;
}

/** No part of the node was made up by error recovery (a re-synced node, an inserted token, a string cut short). */
export function intact(node: CstNode): boolean {
  if (node.recoveredNode) return false;
  return Object.values(node.children).every((list) => list.every((c) => ('children' in c ? intact(c) : realToken(c))));
}

/** The declarations of a statement list (`statement` or `loopStatement` nodes), in order; a node that lost its alternative stands for itself. */
function declarationsIn(list: CstElement[] | undefined): CstNode[] {
  return ((list ?? []) as CstNode[]).map((s) => (Object.values(s.children)[0]?.[0] as CstNode | undefined) ?? s);
}

function tokensOf(node: CstNode, name: string): IToken[] {
  return (node.children[name] ?? []) as IToken[];
}

/** A loop's braces, when both are in the text. */
function loopBraces(loop: CstNode): { open: IToken; close: IToken } | undefined {
  const [open] = tokensOf(loop, 'LCurly');
  const [close] = tokensOf(loop, 'RCurly');
  return open && close && realToken(open) && realToken(close) ? { open, close } : undefined;
}

/** A loop whose header and braces are intact keeps the statements of its body that are, whatever happened to the others. */
function shellIntact(loop: CstNode): boolean {
  const header = loop.children.loopHeader?.[0] as CstNode | undefined;
  return !loop.recoveredNode && header !== undefined && intact(header) && loopBraces(loop) !== undefined;
}

export interface Judged {
  /** Statement nodes (at the top or in a loop's body) to build: a kept loop builds only its kept body statements. */
  kept: Set<CstNode>;
  leftOut: LeftOut;
}

/**
 * Statements that no mistake touches. A mistake touches the statement whose text holds it; one between statements (a
 * stray token) touches the statement before it when on that statement's last line, as a rest of it (`let a = 1 < 2 < 3`),
 * else none. A loop with an intact header and braces is judged statement by statement; otherwise it goes as a whole.
 */
export function judgeStatements(cst: CstNode, tokens: readonly IToken[], mistakes: readonly MistakeAt[]): Judged {
  const kept = new Set<CstNode>();
  // Offset ranges of kept text: tokens outside them belong to left-out statements (or to none).
  const covered: [number, number][] = [];
  const judge = (list: CstNode[], at: MistakeAt[]) => {
    const touched = new Set<CstNode>();
    const inBody = new Map<CstNode, MistakeAt[]>();
    const between: MistakeAt[] = [];
    for (const m of at) {
      const holder = list.find((s) => s.location!.startOffset <= m.offset && m.offset <= s.location!.endOffset!);
      if (holder === undefined) {
        const before = list.filter((s) => s.location!.endOffset! < m.offset).at(-1);
        if (before !== undefined && before.location!.endLine === m.line) touched.add(before);
        between.push(m);
        continue;
      }
      const braces = holder.name === 'loopDecl' ? loopBraces(holder) : undefined;
      if (braces && braces.open.startOffset < m.offset && m.offset < braces.close.startOffset) {
        inBody.set(holder, [...(inBody.get(holder) ?? []), m]);
      } else {
        touched.add(holder);
      }
    }
    // A `}` left stray between statements closes a `{` the parser did not take as a block's (a loop whose `for` or
    // header is broken): the statements after that `{` are the block's body and go with it (on their own they would
    // use loop variables that are not there). With no `{` open, the mistake before it hid the `{` (in a string left
    // open, say): the block starts there.
    for (const m of between) {
      if (!isCloseBrace(tokens, m.offset)) continue;
      const start = strayCloseOpener(tokens, m.offset) ?? Math.max(-1, ...at.map((x) => x.offset).filter((o) => o < m.offset));
      if (start < 0) continue;
      for (const s of list) if (start < s.location!.startOffset && s.location!.startOffset < m.offset) touched.add(s);
    }
    for (const s of list) {
      if (touched.has(s) || s.location === undefined || Number.isNaN(s.location.startOffset)) continue;
      if (s.name === 'loopDecl') {
        if (!shellIntact(s)) continue;
        const { open, close } = loopBraces(s)!;
        kept.add(s);
        covered.push([s.location.startOffset, open.startOffset], [close.startOffset, close.startOffset]);
        judge(declarationsIn(s.children.loopStatement), inBody.get(s) ?? []);
      } else if (intact(s)) {
        kept.add(s);
        covered.push([s.location.startOffset, s.location.endOffset!]);
      }
    }
  };
  judge(declarationsIn(cst.children.statement), [...mistakes]);
  return { kept, leftOut: declaredOutside(tokens, covered) };
}

const OPENERS = new Set<TokenType>([LCurly, LCurlyNested, InterpStart]);
const CLOSERS = new Set<TokenType>([RCurly, RCurlyNested]);

/** The index of the token at `offset` (tokens are in offset order), or -1. */
function tokenIndexAt(tokens: readonly IToken[], offset: number): number {
  let lo = 0;
  let hi = tokens.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tokens[mid]!.startOffset < offset) lo = mid + 1;
    else hi = mid;
  }
  return tokens[lo]?.startOffset === offset ? lo : -1;
}

function isCloseBrace(tokens: readonly IToken[], offset: number): boolean {
  return tokens[tokenIndexAt(tokens, offset)]?.tokenType === RCurly;
}

/** For the `}` at `offset`: the offset of the `{` it closes, when one is open before it. */
function strayCloseOpener(tokens: readonly IToken[], offset: number): number | undefined {
  let depth = 1;
  for (let i = tokenIndexAt(tokens, offset) - 1; i >= 0; i--) {
    const type = tokens[i]!.tokenType;
    if (CLOSERS.has(type)) depth++;
    else if (OPENERS.has(type) && --depth === 0) return tokens[i]!.startOffset;
  }
  return undefined;
}

/** The path of the include keyword at `i` when a plain string follows it (closed, or cut at the line's end), else undefined. */
function plainPathAfter(tokens: readonly IToken[], i: number): string | undefined {
  if (tokens[i + 1]?.tokenType !== StringStart) return undefined;
  let j = i + 2;
  let text = '';
  for (; tokens[j]?.tokenType === StringText; j++) text += tokens[j]!.image;
  const end = tokens[j]?.tokenType;
  return text !== '' && (end === undefined || end === StringEnd || end === StringNewline) ? text : undefined;
}

const GLUED_KEYWORD = /^(?:let|stage)([A-Za-z_]\w*)$/;

/**
 * The names declared in text outside the kept statements: a name after `stage` or `let`, or before `=` (a keyword
 * mistyped as `stag a = ...`). Over-counting only spares a few reports in a file that has mistakes already.
 */
function declaredOutside(tokens: readonly IToken[], covered: [number, number][]): LeftOut {
  const leftOut = nothingLeftOut();
  covered.sort((a, b) => a[0] - b[0]);
  let range = 0;
  tokens.forEach((t, i) => {
    while (range < covered.length && covered[range]![1] < t.startOffset) range++;
    if (range < covered.length && covered[range]![0] <= t.startOffset) return;
    if (t.tokenType === Include) {
      const named = plainPathAfter(tokens, i);
      if (named === undefined) leftOut.anyName = true;
      else leftOut.includes.push({ path: named, offset: t.startOffset });
    }
    if (t.tokenType !== Identifier) return;
    const before = tokens[i - 1]?.tokenType;
    const assigned = tokens[i + 1]?.tokenType === Equals;
    if (before === Stage || before === Let || assigned) leftOut.names.add(t.image);
    // A keyword run into its name (`letlr = ...`: a space deleted) declares the rest.
    const glued = assigned ? GLUED_KEYWORD.exec(t.image) : null;
    if (glued) leftOut.names.add(glued[1]!);
  });
  return leftOut;
}
