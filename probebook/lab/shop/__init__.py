"""The demo shop: five services of our own and one outside provider (bank). Copied into release
directories by the lab, so each service runs a code version of its own."""
