// CST → AST: a Chevrotain visitor that keeps a span on every node and reports the few mistakes only visible here.
import type { CstNode, IToken } from 'chevrotain';
import type {
  BinaryOp, Expr, IncludeDecl, InputDecl, LetDecl, LoopDecl, LoopStatement, LoopVar, ObjectEntry, ObjectExpr,
  Reference, SelectorPair, StageDecl, Statement, StringExpr,
} from './ast.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from './diagnostics.ts';
import { ESCAPES, tokenSpan } from './lexer.ts';
import { pipeParser } from './parser.ts';

type Nodes = CstNode[] | undefined;
type Tokens = IToken[] | undefined;

interface FileCtx { statement?: Nodes }
interface StatementCtx { includeDecl?: Nodes; letDecl?: Nodes; stageDecl?: Nodes; loopDecl?: Nodes }
interface IncludeCtx { stringLiteral: CstNode[] }
interface LetCtx { Identifier: IToken[]; expression: CstNode[] }
interface StageCtx { name: IToken[]; kind: IToken[]; inputList?: Nodes; object: CstNode[] }
interface InputListCtx { inputDecl?: Nodes; Comma?: Tokens }
interface InputCtx { Identifier: IToken[]; reference: CstNode[] }
interface ReferenceCtx { Identifier: IToken[]; Star?: Tokens; selector?: Nodes }
interface SelectorCtx { Identifier: IToken[]; expression: CstNode[] }
interface LoopCtx { loopHeader: CstNode[]; loopStatement?: Nodes }
interface LoopHeaderCtx { loopVar: CstNode[]; expression?: Nodes; stringLiteral?: Nodes }
interface LoopVarCtx { Identifier: IToken[]; expression: CstNode[] }
interface LoopStatementCtx { letDecl?: Nodes; stageDecl?: Nodes; loopDecl?: Nodes }
interface OrCtx { andExpr: CstNode[]; Kw_or?: Tokens }
interface AndCtx { notExpr: CstNode[]; Kw_and?: Tokens }
interface NotCtx { Kw_not?: Tokens; notExpr?: Nodes; comparison?: Nodes }
interface ComparisonCtx { additive: CstNode[]; CompareOp?: Tokens }
interface AdditiveCtx { multiplicative: CstNode[]; AddOp?: Tokens }
interface MultiplicativeCtx { unary: CstNode[]; MulOp?: Tokens }
interface UnaryCtx { Minus?: Tokens; unary?: Nodes; primary?: Nodes }
interface PrimaryCtx {
  NumberLiteral?: Tokens; stringLiteral?: Nodes; Kw_true?: Tokens; Kw_false?: Tokens; Kw_null?: Tokens;
  list?: Nodes; object?: Nodes; parenthesized?: Nodes; conditional?: Nodes; nameOrCall?: Nodes;
}
interface ParenthesizedCtx { expression: CstNode[] }
interface ConditionalCtx { condition: CstNode[]; then: CstNode[]; else: CstNode[] }
interface NameOrCallCtx { Identifier: IToken[]; LParen?: Tokens; expression?: Nodes }
interface ListCtx { expression?: Nodes }
interface ObjectCtx { entry?: Nodes; Comma?: Tokens }
interface EntryCtx { Identifier?: Tokens; stringLiteral?: Nodes; expression: CstNode[] }
interface StringCtx { StringText?: Tokens; StringEscape?: Tokens; interpolation?: Nodes }
interface InterpolationCtx { expression: CstNode[] }

function joinSpans(a: SourceSpan, b: SourceSpan): SourceSpan {
  return { ...a, endLine: b.endLine, endColumn: b.endColumn, endOffset: b.endOffset };
}

const BaseVisitor = pipeParser.getBaseCstVisitorConstructor();

class AstBuilder extends BaseVisitor {
  private fileName = '';
  private diagnostics: Diagnostic[] = [];
  /** The statement nodes to build (every one when undefined): a file with mistakes builds those they do not touch. */
  private kept: ReadonlySet<CstNode> | undefined;

  constructor() {
    super();
    this.validateVisitor();
  }

  /** The AST of a node (a whole file gives Statement[]) and the diagnostics found on the way. */
  build(cst: CstNode, file: string, kept?: ReadonlySet<CstNode>): { node: unknown; diagnostics: Diagnostic[] } {
    this.fileName = file;
    this.diagnostics = [];
    this.kept = kept;
    const node = this.visit(cst);
    return { node, diagnostics: this.diagnostics };
  }

  // Chevrotain hands a rule method only the node's children; passing the node itself gives every method its location.
  override visit(node: CstNode | CstNode[]): unknown {
    const one = Array.isArray(node) ? node[0]! : node;
    return super.visit(one, one);
  }

  private span(node: CstNode): SourceSpan {
    const l = node.location!;
    return {
      file: this.fileName,
      line: l.startLine!,
      column: l.startColumn!,
      endLine: l.endLine!,
      endColumn: l.endColumn! + 1,
      offset: l.startOffset,
      endOffset: l.endOffset! + 1,
    };
  }

  private tokSpan(t: IToken): SourceSpan {
    return tokenSpan(this.fileName, t);
  }

  private expr(node: CstNode): Expr {
    return this.visit(node) as Expr;
  }

  /** Items on one line need a comma between them; on separate lines the line break is enough. */
  private checkSeparated(items: CstNode[], commas: IToken[], what: string): void {
    for (let i = 1; i < items.length; i++) {
      const prev = items[i - 1]!.location!;
      const next = items[i]!.location!;
      if (next.startLine !== prev.endLine) continue;
      if (commas.some((c) => c.startOffset > prev.endOffset! && c.startOffset < next.startOffset)) continue;
      this.diagnostics.push(diagnostic('E_PARSE', `expected \`,\` or a line break between ${what}`, this.span(items[i]!)));
    }
  }

  /** Whether to build a `statement` or `loopStatement` node. */
  private keeps(node: CstNode): boolean {
    if (this.kept === undefined) return true;
    const declaration = Object.values(node.children)[0]?.[0] as CstNode | undefined;
    return declaration !== undefined && this.kept.has(declaration);
  }

  file(ctx: FileCtx): Statement[] {
    return (ctx.statement ?? []).filter((s) => this.keeps(s)).map((s) => this.visit(s) as Statement);
  }

  statement(ctx: StatementCtx): Statement {
    const node = ctx.includeDecl ?? ctx.letDecl ?? ctx.stageDecl ?? ctx.loopDecl;
    return this.visit(node![0]!) as Statement;
  }

  includeDecl(ctx: IncludeCtx, node: CstNode): IncludeDecl {
    const str = this.visit(ctx.stringLiteral[0]!) as StringExpr;
    return { type: 'include', path: this.plainText(str, 'an include path'), pathSpan: str.span, span: this.span(node) };
  }

  letDecl(ctx: LetCtx, node: CstNode): LetDecl {
    const name = ctx.Identifier[0]!;
    return { type: 'let', name: name.image, nameSpan: this.tokSpan(name), value: this.expr(ctx.expression[0]!), span: this.span(node) };
  }

  stageDecl(ctx: StageCtx, node: CstNode): StageDecl {
    const name = ctx.name[0]!;
    const kind = ctx.kind[0]!;
    return {
      type: 'stage',
      name: name.image,
      nameSpan: this.tokSpan(name),
      kind: kind.image,
      kindSpan: this.tokSpan(kind),
      inputs: ctx.inputList ? (this.visit(ctx.inputList[0]!) as InputDecl[]) : [],
      params: this.visit(ctx.object[0]!) as ObjectExpr,
      span: this.span(node),
    };
  }

  inputList(ctx: InputListCtx): InputDecl[] {
    const inputs = ctx.inputDecl ?? [];
    this.checkSeparated(inputs, ctx.Comma ?? [], 'inputs');
    return inputs.map((i) => this.visit(i) as InputDecl);
  }

  inputDecl(ctx: InputCtx, node: CstNode): InputDecl {
    const name = ctx.Identifier[0]!;
    return { name: name.image, nameSpan: this.tokSpan(name), ref: this.visit(ctx.reference[0]!) as Reference, span: this.span(node) };
  }

  reference(ctx: ReferenceCtx, node: CstNode): Reference {
    const name = ctx.Identifier[0]!;
    let select: Reference['select'] = null;
    if (ctx.Star) select = { type: 'all' };
    else if (ctx.selector) select = { type: 'match', pairs: ctx.selector.map((s) => this.visit(s) as SelectorPair) };
    return { name: name.image, nameSpan: this.tokSpan(name), select, span: this.span(node) };
  }

  selector(ctx: SelectorCtx): SelectorPair {
    const name = ctx.Identifier[0]!;
    return { variable: name.image, variableSpan: this.tokSpan(name), value: this.expr(ctx.expression[0]!) };
  }

  loopDecl(ctx: LoopCtx, node: CstNode): LoopDecl {
    const header = this.visit(ctx.loopHeader[0]!) as Omit<LoopDecl, 'type' | 'body' | 'span'>;
    const body = (ctx.loopStatement ?? []).filter((s) => this.keeps(s)).map((s) => this.visit(s) as LoopStatement);
    return { type: 'loop', ...header, body, span: this.span(node) };
  }

  loopHeader(ctx: LoopHeaderCtx, node: CstNode): Omit<LoopDecl, 'type' | 'body' | 'span'> {
    return {
      vars: ctx.loopVar.map((v) => this.visit(v) as LoopVar),
      where: ctx.expression ? this.expr(ctx.expression[0]!) : null,
      label: ctx.stringLiteral ? (this.visit(ctx.stringLiteral[0]!) as StringExpr) : null,
      headerSpan: this.span(node),
    };
  }

  loopVar(ctx: LoopVarCtx, node: CstNode): LoopVar {
    const name = ctx.Identifier[0]!;
    return { name: name.image, nameSpan: this.tokSpan(name), values: this.expr(ctx.expression[0]!), span: this.span(node) };
  }

  loopStatement(ctx: LoopStatementCtx): LoopStatement {
    const node = ctx.letDecl ?? ctx.stageDecl ?? ctx.loopDecl;
    return this.visit(node![0]!) as LoopStatement;
  }

  /** Left-associative chain: operands[i] and operands[i+1] are joined by ops[i]. */
  private chain(operands: CstNode[], ops: IToken[] | undefined): Expr {
    let left = this.expr(operands[0]!);
    (ops ?? []).forEach((op, i) => {
      const right = this.expr(operands[i + 1]!);
      left = { type: 'binary', op: op.image as BinaryOp, left, right, opSpan: this.tokSpan(op), span: joinSpans(left.span, right.span) };
    });
    return left;
  }

  expression(ctx: OrCtx): Expr {
    return this.chain(ctx.andExpr, ctx.Kw_or);
  }

  andExpr(ctx: AndCtx): Expr {
    return this.chain(ctx.notExpr, ctx.Kw_and);
  }

  notExpr(ctx: NotCtx, node: CstNode): Expr {
    if (ctx.Kw_not) return { type: 'unary', op: 'not', operand: this.expr(ctx.notExpr![0]!), span: this.span(node) };
    return this.expr(ctx.comparison![0]!);
  }

  comparison(ctx: ComparisonCtx): Expr {
    return this.chain(ctx.additive, ctx.CompareOp);
  }

  additive(ctx: AdditiveCtx): Expr {
    return this.chain(ctx.multiplicative, ctx.AddOp);
  }

  multiplicative(ctx: MultiplicativeCtx): Expr {
    return this.chain(ctx.unary, ctx.MulOp);
  }

  unary(ctx: UnaryCtx, node: CstNode): Expr {
    if (ctx.Minus) return { type: 'unary', op: '-', operand: this.expr(ctx.unary![0]!), span: this.span(node) };
    return this.expr(ctx.primary![0]!);
  }

  primary(ctx: PrimaryCtx, node: CstNode): Expr {
    const span = this.span(node);
    if (ctx.NumberLiteral) {
      const image = ctx.NumberLiteral[0]!.image;
      const value = Number(image);
      // Past 2^53 doubles skip whole numbers: 9007199254740993 would silently become ...992.
      if (/^\d+$/.test(image) && !Number.isSafeInteger(value)) {
        const becomes = String(BigInt(value)) === image.replace(/^0+(?=\d)/, '') ? '' : ` (it would become ${BigInt(value)})`;
        this.diagnostics.push(diagnostic('E_NUMBER_RANGE', `the whole number ${image} is beyond 2^53 - 1, where doubles skip whole numbers${becomes}`, span,
          ['write it with an exponent (e.g. 1e20) if a floating-point value is meant']));
      }
      return { type: 'number', value, span };
    }
    if (ctx.Kw_true) return { type: 'boolean', value: true, span };
    if (ctx.Kw_false) return { type: 'boolean', value: false, span };
    if (ctx.Kw_null) return { type: 'null', span };
    const inner = ctx.stringLiteral ?? ctx.list ?? ctx.object ?? ctx.parenthesized ?? ctx.conditional ?? ctx.nameOrCall;
    return this.expr(inner![0]!);
  }

  parenthesized(ctx: ParenthesizedCtx, node: CstNode): Expr {
    // The parentheses belong to the span so that messages point at what the user wrote.
    return { ...this.expr(ctx.expression[0]!), span: this.span(node) };
  }

  conditional(ctx: ConditionalCtx, node: CstNode): Expr {
    return {
      type: 'if',
      condition: this.expr(ctx.condition[0]!),
      then: this.expr(ctx.then[0]!),
      else: this.expr(ctx.else[0]!),
      span: this.span(node),
    };
  }

  nameOrCall(ctx: NameOrCallCtx, node: CstNode): Expr {
    const name = ctx.Identifier[0]!;
    if (!ctx.LParen) return { type: 'name', name: name.image, span: this.tokSpan(name) };
    return {
      type: 'call',
      callee: name.image,
      calleeSpan: this.tokSpan(name),
      args: (ctx.expression ?? []).map((e) => this.expr(e)),
      span: this.span(node),
    };
  }

  list(ctx: ListCtx, node: CstNode): Expr {
    return { type: 'list', items: (ctx.expression ?? []).map((e) => this.expr(e)), span: this.span(node) };
  }

  object(ctx: ObjectCtx, node: CstNode): ObjectExpr {
    const entries = ctx.entry ?? [];
    this.checkSeparated(entries, ctx.Comma ?? [], 'entries');
    return { type: 'object', entries: entries.map((e) => this.visit(e) as ObjectEntry), span: this.span(node) };
  }

  entry(ctx: EntryCtx, node: CstNode): ObjectEntry {
    let key: string;
    let keySpan: SourceSpan;
    if (ctx.Identifier) {
      key = ctx.Identifier[0]!.image;
      keySpan = this.tokSpan(ctx.Identifier[0]!);
    } else {
      const str = this.visit(ctx.stringLiteral![0]!) as StringExpr;
      key = this.plainText(str, 'a key');
      keySpan = str.span;
    }
    return { key, keySpan, value: this.expr(ctx.expression[0]!), span: this.span(node) };
  }

  stringLiteral(ctx: StringCtx, node: CstNode): StringExpr {
    // Text, escapes and interpolations sit in separate child lists; source order is restored by offset.
    const pieces: { offset: number; piece: string | Expr }[] = [];
    for (const t of ctx.StringText ?? []) pieces.push({ offset: t.startOffset, piece: t.image });
    for (const t of ctx.StringEscape ?? []) pieces.push({ offset: t.startOffset, piece: this.unescape(t) });
    for (const n of ctx.interpolation ?? []) pieces.push({ offset: n.location!.startOffset, piece: this.visit(n) as Expr });
    pieces.sort((a, b) => a.offset - b.offset);
    const parts: (string | Expr)[] = [];
    for (const { piece } of pieces) {
      const last = parts.at(-1);
      if (typeof piece === 'string' && typeof last === 'string') parts[parts.length - 1] = last + piece;
      else parts.push(piece);
    }
    return { type: 'string', parts, span: this.span(node) };
  }

  interpolation(ctx: InterpolationCtx): Expr {
    return this.expr(ctx.expression[0]!);
  }

  // An unknown escape is reported by the lexer and kept as written.
  private unescape(t: IToken): string {
    return ESCAPES[t.image.slice(1)] ?? t.image;
  }

  /** The text of a string that must be known without evaluation (include paths, keys). */
  private plainText(str: StringExpr, what: string): string {
    const interpolated = str.parts.find((p) => typeof p !== 'string');
    if (interpolated !== undefined) {
      this.diagnostics.push(diagnostic('E_PARSE', `${what} must be a plain string, without \`\${...}\``, interpolated.span));
    }
    return str.parts.filter((p): p is string => typeof p === 'string').join('');
  }
}

const builder = new AstBuilder();

/**
 * The statements of one parsed file, plus diagnostics for mistakes the grammar alone cannot see. With `kept`, only
 * those statement nodes (partial.ts): the others may be incomplete after error recovery.
 */
export function toAst(cst: CstNode, file: string, kept?: ReadonlySet<CstNode>): { statements: Statement[]; diagnostics: Diagnostic[] } {
  const built = builder.build(cst, file, kept);
  return { statements: built.node as Statement[], diagnostics: built.diagnostics };
}
