package gateway

import (
	"net"
	"os"
)

// Invocation is how people reach the gateway, shown in hints: the public
// name if one is configured, else a guess from the listen address.
func Invocation(publicName, listen string) string {
	if publicName != "" {
		return "ssh " + publicName
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "ssh GATEWAY"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	} else if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		host = "localhost"
	}
	if port == "22" {
		return "ssh " + host
	}
	return "ssh -p " + port + " " + host
}
