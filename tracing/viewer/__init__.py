"""The trace viewer: plain-text rendering of stored traces (render) and the
`estafeta traces list/show` commands (cli)."""
