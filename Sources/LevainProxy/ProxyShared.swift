// Shared by the gateway and the egress proxy.
