// JSON values as they flow through parameters, metrics and manifests.
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
