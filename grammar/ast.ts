// The .pipe abstract syntax tree: plain data with a source span on every node, built by to-ast.ts.
import type { SourceSpan } from './diagnostics.ts';

export type BinaryOp = '+' | '-' | '*' | '/' | '%' | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'and' | 'or';
export type UnaryOp = '-' | 'not';

export type Expr =
  | NumberLit
  | StringExpr
  | BooleanLit
  | NullLit
  | ListExpr
  | ObjectExpr
  | NameExpr
  | UnaryExpr
  | BinaryExpr
  | IfExpr
  | CallExpr;

export interface NumberLit {
  type: 'number';
  value: number;
  span: SourceSpan;
}

/** A double-quoted string: literal text (escapes already decoded) and `${expr}` parts, in order. */
export interface StringExpr {
  type: 'string';
  parts: (string | Expr)[];
  span: SourceSpan;
}

export interface BooleanLit {
  type: 'boolean';
  value: boolean;
  span: SourceSpan;
}

export interface NullLit {
  type: 'null';
  span: SourceSpan;
}

export interface ListExpr {
  type: 'list';
  items: Expr[];
  span: SourceSpan;
}

export interface ObjectEntry {
  key: string;
  keySpan: SourceSpan;
  value: Expr;
  span: SourceSpan;
}

/** An object literal, and also a stage's params block. */
export interface ObjectExpr {
  type: 'object';
  entries: ObjectEntry[];
  span: SourceSpan;
}

/** A let or a loop variable. */
export interface NameExpr {
  type: 'name';
  name: string;
  span: SourceSpan;
}

export interface UnaryExpr {
  type: 'unary';
  op: UnaryOp;
  operand: Expr;
  span: SourceSpan;
}

export interface BinaryExpr {
  type: 'binary';
  op: BinaryOp;
  left: Expr;
  right: Expr;
  opSpan: SourceSpan;
  span: SourceSpan;
}

export interface IfExpr {
  type: 'if';
  condition: Expr;
  then: Expr;
  else: Expr;
  span: SourceSpan;
}

/** A function call such as `range(0, 4)`. */
export interface CallExpr {
  type: 'call';
  callee: string;
  calleeSpan: SourceSpan;
  args: Expr[];
  span: SourceSpan;
}

export interface SelectorPair {
  variable: string;
  variableSpan: SourceSpan;
  value: Expr;
}

/** `name` (one stage, or the same variant inside its loop), `name[*]` or `name[var=value, ...]`. */
export interface Reference {
  name: string;
  nameSpan: SourceSpan;
  select: null | { type: 'all' } | { type: 'match'; pairs: SelectorPair[] };
  span: SourceSpan;
}

export interface InputDecl {
  name: string;
  nameSpan: SourceSpan;
  ref: Reference;
  span: SourceSpan;
}

export interface StageDecl {
  type: 'stage';
  name: string;
  nameSpan: SourceSpan;
  kind: string;
  kindSpan: SourceSpan;
  inputs: InputDecl[];
  params: ObjectExpr;
  span: SourceSpan;
}

export interface LetDecl {
  type: 'let';
  name: string;
  nameSpan: SourceSpan;
  value: Expr;
  span: SourceSpan;
}

export interface IncludeDecl {
  type: 'include';
  path: string;
  pathSpan: SourceSpan;
  span: SourceSpan;
}

export interface LoopVar {
  name: string;
  nameSpan: SourceSpan;
  values: Expr;
  span: SourceSpan;
}

export interface LoopDecl {
  type: 'loop';
  vars: LoopVar[];
  where: Expr | null;
  label: StringExpr | null;
  body: LoopStatement[];
  /** The header, from `for` to the end of the label (or the last clause). */
  headerSpan: SourceSpan;
  span: SourceSpan;
}

export type LoopStatement = LetDecl | StageDecl | LoopDecl;
export type Statement = IncludeDecl | LetDecl | StageDecl | LoopDecl;

export interface PipeFile {
  file: string;
  statements: Statement[];
}

/** The expressions directly inside an expression (for checks that walk every expression). */
export function subExpressions(e: Expr): Expr[] {
  switch (e.type) {
    case 'string':
      return e.parts.filter((p): p is Expr => typeof p !== 'string');
    case 'list':
      return e.items;
    case 'object':
      return e.entries.map((x) => x.value);
    case 'unary':
      return [e.operand];
    case 'binary':
      return [e.left, e.right];
    case 'if':
      return [e.condition, e.then, e.else];
    case 'call':
      return e.args;
    default:
      return [];
  }
}
