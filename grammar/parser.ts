// The .pipe grammar as a Chevrotain CST parser: syntax only; meaning is given by to-ast.ts and the runtime phases.
import type { IParserErrorMessageProvider, IToken, TokenType } from 'chevrotain';
import { CstParser, EOF } from './chevrotain.ts';
import {
  ALL_TOKENS, AddOp, And, Colon, Comma, CompareOp, Each, Else, Equals, False, For, Identifier, If, In, Include,
  InterpStart, LBracket, LCurly, LParen, Let, Minus, MulOp, Named, Not, Null, NumberLiteral, Or, RBracket, RCurly,
  RParen, Stage, Star, StringEnd, StringEscape, StringNewline, StringStart, StringText, Then, True, Where,
} from './tokens.ts';

/** How a token is named in a message: its label (`` `{` ``, `a name`), or "the end of the file". */
function describeType(t: TokenType): string {
  return t === EOF ? 'the end of the file' : (t.LABEL ?? t.name);
}

function describeToken(t: IToken): string {
  if (t.tokenType === EOF) return 'the end of the file';
  if (t.tokenType === StringStart) return 'a string';
  // The line break that cut a string short: quoted, it would put a raw line break in the message.
  if (t.tokenType === StringNewline) return 'the unterminated string';
  // A closer the lexer supplied for one left open (lexer.ts): it has no text to quote.
  if (t.image === '') return t.tokenType === StringEnd ? 'the end of the string' : 'the end of the `${`';
  return `\`${t.image}\``;
}

function oneOf(types: TokenType[]): string {
  const names = [...new Set(types.map(describeType))];
  if (names.length === 1) return names[0]!;
  return `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
}

/**
 * Whether `actual` starts a later line than `previous` ends: then what is missing belongs at the end of the line
 * before (`oops` with no `:`), and the error says "after `oops`" and points there rather than at the next line.
 */
export function endsLineEarly(previous: IToken | undefined, actual: IToken): boolean {
  if (previous === undefined || Number.isNaN(previous.startOffset) || Number.isNaN(actual.startOffset)) return false;
  return previous.tokenType !== EOF && (actual.startLine ?? 0) > (previous.endLine ?? Infinity);
}

/** ", found Y", or " after P" when Y is on a later line than P (see endsLineEarly). */
function found(actual: IToken, previous: IToken | undefined): string {
  return endsLineEarly(previous, actual) ? ` after ${describeToken(previous!)}` : `, found ${describeToken(actual)}`;
}

const STATEMENT_STARTS = new Set<TokenType>([Let, Stage, For, Include]);

/** Messages in the project's voice: "expected X, found Y". */
const STATEMENT_START = '`let`, `stage`, `for each` or `include`';

/**
 * Thrown by the message provider once a parse has used up its error budget: recovering from one syntax error costs
 * about 0.1 ms, and a file of garbage has tens of thousands. The provider is the one public hook called per error.
 */
export class TooManySyntaxErrors extends Error {}

let errorsLeft = Infinity;

/** Allow at most `n` syntax errors in the next parse; parsing stops with TooManySyntaxErrors at the next one. */
export function limitSyntaxErrors(n: number): void {
  errorsLeft = n;
}

function counted<A extends unknown[]>(build: (...args: A) => string): (...args: A) => string {
  return (...args) => {
    if (--errorsLeft < 0) throw new TooManySyntaxErrors();
    return build(...args);
  };
}

const MESSAGES: IParserErrorMessageProvider = {
  // Expecting the end of the file means a statement just ended, so what may come is another statement.
  buildMismatchTokenMessage: counted(({ expected, actual, previous }) =>
    `expected ${expected === EOF ? STATEMENT_START : describeType(expected)}${found(actual, previous)}`),
  buildNotAllInputParsedMessage: counted(({ firstRedundant }) => `expected ${STATEMENT_START}, found ${describeToken(firstRedundant)}`),
  buildNoViableAltMessage: counted(({ expectedPathsPerAlt, actual, previous, customUserDescription }) => {
    const firsts = expectedPathsPerAlt.flatMap((paths) => paths.map((p) => p[0]!)).filter(Boolean);
    // Every way an expression can start makes a long list; "a value" says the same.
    const what = customUserDescription ?? (firsts.includes(NumberLiteral) ? 'a value' : oneOf(firsts));
    return `expected ${what}${found(actual[0]!, previous)}`;
  }),
  buildEarlyExitMessage: counted(({ expectedIterationPaths, actual, previous, customUserDescription }) => {
    const what = customUserDescription ?? oneOf(expectedIterationPaths.map((p) => p[0]!));
    return `expected ${what}${found(actual[0]!, previous)}`;
  }),
};

let instancesCreated = 0;

/** How many parser instances exist; self-analysis is costly, so there should only ever be one. */
export function parserInstancesCreated(): number {
  return instancesCreated;
}

export class PipeParser extends CstParser {
  constructor() {
    super(ALL_TOKENS, {
      recoveryEnabled: true,
      nodeLocationTracking: 'full',
      errorMessageProvider: MESSAGES,
      maxLookahead: 3,
    });
    instancesCreated++;
    this.performSelfAnalysis();
  }

  /**
   * Recovery may skip one token that stands where another is expected, but never a keyword that starts a statement:
   * `stage w =` left half typed would take the next line's `stage` as noise and its statement with it, which then
   * could not be checked (grammar/partial.ts).
   */
  protected override canTokenTypeBeDeletedInRecovery(): boolean {
    return !STATEMENT_STARTS.has(this.LA(1).tokenType);
  }

  file = this.RULE('file', () => {
    this.MANY(() => this.SUBRULE(this.statement));
  });

  statement = this.RULE('statement', () => {
    this.OR({
      DEF: [
        { ALT: () => this.SUBRULE(this.includeDecl) },
        { ALT: () => this.SUBRULE(this.letDecl) },
        { ALT: () => this.SUBRULE(this.stageDecl) },
        { ALT: () => this.SUBRULE(this.loopDecl) },
      ],
      ERR_MSG: STATEMENT_START,
    });
  });

  includeDecl = this.RULE('includeDecl', () => {
    this.CONSUME(Include);
    this.SUBRULE(this.stringLiteral);
  });

  letDecl = this.RULE('letDecl', () => {
    this.CONSUME(Let);
    this.CONSUME(Identifier);
    this.CONSUME(Equals);
    this.SUBRULE(this.expression);
  });

  // stage NAME = KIND [ (INPUTS) ] { PARAMS }
  stageDecl = this.RULE('stageDecl', () => {
    this.CONSUME(Stage);
    this.CONSUME(Identifier, { LABEL: 'name' });
    this.CONSUME(Equals);
    this.CONSUME2(Identifier, { LABEL: 'kind' });
    this.OPTION(() => this.SUBRULE(this.inputList));
    this.SUBRULE(this.object);
  });

  // Inputs are separated by commas and/or line breaks; to-ast.ts checks that two on one line have a comma.
  inputList = this.RULE('inputList', () => {
    this.CONSUME(LParen);
    this.MANY(() => {
      this.SUBRULE(this.inputDecl);
      this.OPTION(() => this.CONSUME(Comma));
    });
    this.CONSUME(RParen);
  });

  inputDecl = this.RULE('inputDecl', () => {
    this.CONSUME(Identifier);
    this.CONSUME(Colon);
    this.SUBRULE(this.reference);
  });

  // NAME, NAME[*] or NAME[var=value, ...]
  reference = this.RULE('reference', () => {
    this.CONSUME(Identifier);
    this.OPTION(() => {
      this.CONSUME(LBracket);
      this.OR([
        { ALT: () => this.CONSUME(Star) },
        {
          ALT: () => {
            this.SUBRULE(this.selector);
            this.MANY(() => {
              this.CONSUME(Comma);
              this.SUBRULE2(this.selector);
            });
          },
        },
      ]);
      this.CONSUME(RBracket);
    });
  });

  selector = this.RULE('selector', () => {
    this.CONSUME(Identifier);
    this.CONSUME(Equals);
    this.SUBRULE(this.expression);
  });

  // for each a in A, b in B [where COND] [named "LABEL"] { stages and lets }
  loopDecl = this.RULE('loopDecl', () => {
    this.SUBRULE(this.loopHeader);
    this.CONSUME(LCurly);
    this.MANY(() => this.SUBRULE(this.loopStatement));
    this.CONSUME(RCurly);
  });

  loopHeader = this.RULE('loopHeader', () => {
    this.CONSUME(For);
    this.CONSUME(Each);
    this.SUBRULE(this.loopVar);
    this.MANY(() => {
      this.CONSUME(Comma);
      this.SUBRULE2(this.loopVar);
    });
    this.OPTION(() => {
      this.CONSUME(Where);
      this.SUBRULE(this.expression);
    });
    this.OPTION2(() => {
      this.CONSUME(Named);
      this.SUBRULE(this.stringLiteral);
    });
  });

  loopVar = this.RULE('loopVar', () => {
    this.CONSUME(Identifier);
    this.CONSUME(In);
    this.SUBRULE(this.expression);
  });

  // A nested loop parses so that expansion can explain it is not supported (E_NESTED_LOOP).
  loopStatement = this.RULE('loopStatement', () => {
    this.OR({
      DEF: [
        { ALT: () => this.SUBRULE(this.letDecl) },
        { ALT: () => this.SUBRULE(this.stageDecl) },
        { ALT: () => this.SUBRULE(this.loopDecl) },
      ],
      ERR_MSG: '`let`, `stage` or `}`',
    });
  });

  // Precedence, loosest first: or, and, not, comparison, + -, * / %, unary minus.
  expression = this.RULE('expression', () => {
    this.SUBRULE(this.andExpr);
    this.MANY(() => {
      this.CONSUME(Or);
      this.SUBRULE2(this.andExpr);
    });
  });

  andExpr = this.RULE('andExpr', () => {
    this.SUBRULE(this.notExpr);
    this.MANY(() => {
      this.CONSUME(And);
      this.SUBRULE2(this.notExpr);
    });
  });

  notExpr = this.RULE('notExpr', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(Not);
          this.SUBRULE(this.notExpr);
        },
      },
      { ALT: () => this.SUBRULE(this.comparison) },
    ]);
  });

  // Comparisons do not chain: `a < b < c` is a syntax error rather than a surprise.
  comparison = this.RULE('comparison', () => {
    this.SUBRULE(this.additive);
    this.OPTION(() => {
      this.CONSUME(CompareOp);
      this.SUBRULE2(this.additive);
    });
  });

  additive = this.RULE('additive', () => {
    this.SUBRULE(this.multiplicative);
    this.MANY(() => {
      this.CONSUME(AddOp);
      this.SUBRULE2(this.multiplicative);
    });
  });

  multiplicative = this.RULE('multiplicative', () => {
    this.SUBRULE(this.unary);
    this.MANY(() => {
      this.CONSUME(MulOp);
      this.SUBRULE2(this.unary);
    });
  });

  unary = this.RULE('unary', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(Minus);
          this.SUBRULE(this.unary);
        },
      },
      { ALT: () => this.SUBRULE(this.primary) },
    ]);
  });

  primary = this.RULE('primary', () => {
    this.OR({
      DEF: [
        { ALT: () => this.CONSUME(NumberLiteral) },
        { ALT: () => this.SUBRULE(this.stringLiteral) },
        { ALT: () => this.CONSUME(True) },
        { ALT: () => this.CONSUME(False) },
        { ALT: () => this.CONSUME(Null) },
        { ALT: () => this.SUBRULE(this.list) },
        { ALT: () => this.SUBRULE(this.object) },
        { ALT: () => this.SUBRULE(this.parenthesized) },
        { ALT: () => this.SUBRULE(this.conditional) },
        { ALT: () => this.SUBRULE(this.nameOrCall) },
      ],
      ERR_MSG: 'a value',
    });
  });

  parenthesized = this.RULE('parenthesized', () => {
    this.CONSUME(LParen);
    this.SUBRULE(this.expression);
    this.CONSUME(RParen);
  });

  // `if c then a else b` is a primary so it can appear as an operand; its `else` branch extends as far as it can.
  conditional = this.RULE('conditional', () => {
    this.CONSUME(If);
    this.SUBRULE(this.expression, { LABEL: 'condition' });
    this.CONSUME(Then);
    this.SUBRULE2(this.expression, { LABEL: 'then' });
    this.CONSUME(Else);
    this.SUBRULE3(this.expression, { LABEL: 'else' });
  });

  nameOrCall = this.RULE('nameOrCall', () => {
    this.CONSUME(Identifier);
    this.OPTION(() => {
      this.CONSUME(LParen);
      this.OPTION2(() => {
        this.SUBRULE(this.expression);
        this.MANY(() => {
          this.CONSUME(Comma);
          this.SUBRULE2(this.expression);
        });
      });
      this.CONSUME(RParen);
    });
  });

  // Items need commas (a trailing one is fine).
  list = this.RULE('list', () => {
    this.CONSUME(LBracket);
    this.OPTION(() => {
      this.SUBRULE(this.expression);
      this.MANY(() => {
        this.CONSUME(Comma);
        this.SUBRULE2(this.expression);
      });
      this.OPTION2(() => this.CONSUME2(Comma));
    });
    this.CONSUME(RBracket);
  });

  // Entries are separated by commas and/or line breaks (checked in to-ast.ts); a stage's params are one of these.
  object = this.RULE('object', () => {
    this.CONSUME(LCurly);
    this.MANY(() => {
      this.SUBRULE(this.entry);
      this.OPTION(() => this.CONSUME(Comma));
    });
    this.CONSUME(RCurly);
  });

  entry = this.RULE('entry', () => {
    this.OR({
      DEF: [
        { ALT: () => this.CONSUME(Identifier) },
        { ALT: () => this.SUBRULE(this.stringLiteral) },
      ],
      ERR_MSG: 'a key (a name or a string)',
    });
    this.CONSUME(Colon);
    this.SUBRULE(this.expression);
  });

  stringLiteral = this.RULE('stringLiteral', () => {
    this.CONSUME(StringStart);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(StringText) },
        { ALT: () => this.CONSUME(StringEscape) },
        { ALT: () => this.SUBRULE(this.interpolation) },
      ]);
    });
    this.CONSUME(StringEnd);
  });

  interpolation = this.RULE('interpolation', () => {
    this.CONSUME(InterpStart);
    this.SUBRULE(this.expression);
    this.CONSUME(RCurly);
  });
}

/** The one parser instance, reused for every file (reset by assigning `input`). */
export const pipeParser = new PipeParser();
