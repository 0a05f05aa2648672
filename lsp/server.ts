// `pausepipe lsp`: the Language Server Protocol over stdio, wiring the editor features to open documents.
import { readdirSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TextDocument } from 'vscode-languageserver-textdocument';
import {
  CompletionItemKind,
  DiagnosticSeverity,
  DidChangeWatchedFilesNotification,
  ErrorCodes,
  MarkupKind,
  MessageType,
  ResponseError,
  ShowMessageNotification,
  StreamMessageReader,
  StreamMessageWriter,
  SymbolKind,
  TextDocumentSyncKind,
  TextDocuments,
  createConnection,
  type Connection,
  type DocumentSymbol,
  type TextEdit,
} from 'vscode-languageserver/node';
import { loadKinds } from '../runtime/kinds.ts';
import { STAGE_KINDS } from '../stages/index.ts';
import { readPipeFile } from '../runtime/load.ts';
import { PAUSEPIPE_VERSION } from '../runtime/version.ts';
import type { StageKind } from '../stages/kind.ts';
import { completionsAt, definitionAt, diagnosticsOf, hoverAt, outlineOf, type CompletionKind, type OutlineSymbol } from './features.ts';
import { offsetAt, type ReadFile } from './positions.ts';
import { prepareRenameAt, referencesAt, renameAt, type Project } from './references.ts';

const ITEM_KINDS: Record<CompletionKind, CompletionItemKind> = {
  kind: CompletionItemKind.Class,
  param: CompletionItemKind.Property,
  input: CompletionItemKind.Field,
  stage: CompletionItemKind.Reference,
  variable: CompletionItemKind.Variable,
  value: CompletionItemKind.Value,
  keyword: CompletionItemKind.Keyword,
};

const SYMBOL_KINDS: Record<OutlineSymbol['kind'], SymbolKind> = {
  stage: SymbolKind.Function,
  let: SymbolKind.Constant,
  loop: SymbolKind.Module,
};

function documentSymbol(s: OutlineSymbol): DocumentSymbol {
  return { name: s.name, detail: s.detail, kind: SYMBOL_KINDS[s.kind], range: s.range, selectionRange: s.selectionRange, children: s.children.map(documentSymbol) };
}

/** How long the text must stay unchanged before it is checked. */
const VALIDATE_DELAY_MS = 150;

/** A document's path: its file for `file:` URIs; an unsaved one is placed in the current folder. */
function fileOf(uri: string): string {
  return uri.startsWith('file:') ? fileURLToPath(uri) : path.resolve(`untitled-${uri.replace(/[^A-Za-z0-9]+/g, '-')}.pipe`);
}

/** Folders never searched for .pipe files: packages, version control and the cache. */
const SKIPPED_FOLDERS = new Set(['node_modules', '.git', '.pausepipe']);

/** The .pipe files under the folders, found anew at each request (files come and go while the editor is open). */
function pipeFilesUnder(folders: string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      // Links are not followed: a link to a folder above would make the walk endless.
      if (e.isDirectory() && !SKIPPED_FOLDERS.has(e.name)) walk(path.join(dir, e.name));
      else if (e.isFile() && e.name.endsWith('.pipe')) out.push(path.join(dir, e.name));
    }
  };
  folders.forEach(walk);
  return out;
}

/** Serves one client on `connection` until it exits; `startupProblem`, when given, is shown to the user once initialized. */
export function serve(connection: Connection, kinds: Record<string, StageKind>, startupProblem?: string): void {
  const documents = new TextDocuments(TextDocument);
  const openByFile = new Map<string, TextDocument>();
  // Includes read from the editor's unsaved text when open, so a change in an included file is seen before saving.
  const readFile: ReadFile = (file) => {
    const open = openByFile.get(file);
    return open ? open.getText() : readPipeFile(file);
  };

  const validate = (doc: TextDocument): void => {
    const file = fileOf(doc.uri);
    const diagnostics = diagnosticsOf(doc.getText(), file, kinds, readFile).map((d) => ({
      range: d.range,
      severity: d.severity === 'error' ? DiagnosticSeverity.Error : DiagnosticSeverity.Warning,
      code: d.code,
      source: 'pausepipe',
      message: d.message,
    }));
    void connection.sendDiagnostics({ uri: doc.uri, version: doc.version, diagnostics });
  };
  // Any open file may include the one that changed: check them all, once typing pauses. A check takes milliseconds
  // on a small file but a quarter of a second on 5,000 lines; checking at every keystroke made the edits, and the
  // completion asked for after them, wait behind each other.
  let pending: NodeJS.Timeout | undefined;
  const validateAll = (): void => {
    clearTimeout(pending);
    pending = setTimeout(() => documents.all().forEach(validate), VALIDATE_DELAY_MS);
  };

  // The folders the client opened: a rename in an included file must reach the files including it.
  let folders: string[] = [];
  const project = (): Project => ({ readFile, files: [...new Set([...pipeFilesUnder(folders), ...openByFile.keys()])] });

  let watchFiles = false;
  connection.onInitialize(({ rootUri, workspaceFolders, capabilities }) => {
    watchFiles = capabilities.workspace?.didChangeWatchedFiles?.dynamicRegistration === true;
    const uris = workspaceFolders?.map((f) => f.uri) ?? (rootUri ? [rootUri] : []);
    folders = uris.filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u));
    return {
      serverInfo: { name: 'pausepipe', version: PAUSEPIPE_VERSION },
      capabilities: {
        textDocumentSync: TextDocumentSyncKind.Incremental,
        completionProvider: { triggerCharacters: ['(', '{', ',', ':', ' '] },
        hoverProvider: true,
        definitionProvider: true,
        documentSymbolProvider: true,
        referencesProvider: true,
        renameProvider: { prepareProvider: true },
      },
    };
  });
  // An included file the editor has not opened changes on disk too (a git checkout, another editor): the client is
  // asked to say so, and the open files that may include it are checked again.
  connection.onInitialized(() => {
    // A notification, not showErrorMessage's request: nothing is asked of the user.
    if (startupProblem !== undefined) void connection.sendNotification(ShowMessageNotification.type, { type: MessageType.Error, message: startupProblem });
    if (watchFiles) void connection.client.register(DidChangeWatchedFilesNotification.type, { watchers: [{ globPattern: '**/*.pipe' }] });
  });
  connection.onDidChangeWatchedFiles(() => validateAll());
  documents.onDidOpen((e) => {
    openByFile.set(fileOf(e.document.uri), e.document);
  });
  documents.onDidChangeContent((e) => {
    openByFile.set(fileOf(e.document.uri), e.document);
    validateAll();
  });
  documents.onDidClose((e) => {
    openByFile.delete(fileOf(e.document.uri));
    void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
    validateAll();
  });

  const at = (uri: string, position: { line: number; character: number }) => {
    const doc = documents.get(uri);
    if (!doc) return undefined;
    const text = doc.getText();
    return { text, file: fileOf(uri), offset: offsetAt(text, position) };
  };
  const uriOf = (file: string): string => openByFile.get(file)?.uri ?? pathToFileURL(file).href;
  connection.onCompletion(({ textDocument, position }) => {
    const p = at(textDocument.uri, position);
    if (!p) return [];
    return completionsAt(p.text, p.file, p.offset, kinds, readFile).map((c) => ({
      label: c.label,
      kind: ITEM_KINDS[c.kind],
      insertText: c.insertText,
      filterText: c.filterText,
      detail: c.detail,
      documentation: c.documentation === undefined ? undefined : { kind: MarkupKind.Markdown, value: c.documentation },
    }));
  });
  connection.onHover(({ textDocument, position }) => {
    const p = at(textDocument.uri, position);
    const h = p && hoverAt(p.text, p.file, p.offset, kinds, readFile);
    return h ? { contents: { kind: MarkupKind.Markdown, value: h.markdown }, range: h.range } : null;
  });
  connection.onDefinition(({ textDocument, position }) => {
    const p = at(textDocument.uri, position);
    const loc = p && definitionAt(p.text, p.file, p.offset, readFile);
    return loc ? { uri: uriOf(loc.file), range: loc.range } : null;
  });

  connection.onReferences(({ textDocument, position, context }) => {
    const p = at(textDocument.uri, position);
    if (!p) return null;
    return referencesAt(p.text, p.file, p.offset, project(), context.includeDeclaration).map((l) => ({ uri: uriOf(l.file), range: l.range }));
  });
  connection.onPrepareRename(({ textDocument, position }) => {
    const p = at(textDocument.uri, position);
    const range = p && prepareRenameAt(p.text, p.file, p.offset, project());
    return range ?? null;
  });
  connection.onRenameRequest(({ textDocument, position, newName }) => {
    const p = at(textDocument.uri, position);
    const result = p && renameAt(p.text, p.file, p.offset, newName, project());
    if (!result) return null;
    if ('refused' in result) return new ResponseError(ErrorCodes.InvalidParams, result.refused);
    const changes: Record<string, TextEdit[]> = {};
    for (const e of result.edits) (changes[uriOf(e.file)] ??= []).push({ range: e.range, newText: e.newText });
    return { changes };
  });

  connection.onDocumentSymbol(({ textDocument }) => {
    const doc = documents.get(textDocument.uri);
    return doc ? outlineOf(doc.getText()).map(documentSymbol) : null;
  });

  documents.listen(connection);
  connection.listen();
}

/** Runs the server on this process's stdin and stdout; resolves when the client closes the connection. */
export async function runLanguageServer(): Promise<number> {
  // A plugin that fails to load (PAUSEPIPE_KINDS) must not take the editor's server down: the built-in kinds serve,
  // and the editor is told why the plugin's are missing.
  let kinds: Record<string, StageKind> = STAGE_KINDS;
  let problem: string | undefined;
  try {
    kinds = await loadKinds();
  } catch (error) {
    problem = `pausepipe lsp: ${error instanceof Error ? error.message : String(error)}; only the built-in stage kinds are known`;
    process.stderr.write(`${problem}\n`);
  }
  const connection = createConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout));
  return new Promise((resolve) => {
    connection.onExit(() => resolve(0));
    serve(connection, kinds, problem);
  });
}
