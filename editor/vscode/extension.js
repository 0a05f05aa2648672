// The VS Code side of pausepipe: starts `pausepipe lsp` over stdio for .pipe files (the server does the work).
const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration('pausepipe').get('server.command');
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  // On Windows `npx` is a .cmd script, which only a shell can start.
  const run = { command, args, transport: TransportKind.stdio, options: { cwd, shell: process.platform === 'win32' } };
  client = new LanguageClient('pausepipe', 'pausepipe', { run, debug: run }, {
    documentSelector: [{ scheme: 'file', language: 'pausepipe' }, { scheme: 'untitled', language: 'pausepipe' }],
  });
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client?.stop();
}

module.exports = { activate, deactivate };
