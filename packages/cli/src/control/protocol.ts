/** The control protocol as the CLI speaks it: the shared definitions of `@cluevpn/control`. */
export * from '@cluevpn/control';
