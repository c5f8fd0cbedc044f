package middleware

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// parsePublicKey decodes the first PEM block and returns the key with the one
// JWT algorithm family it may verify; anything we cannot pin to an algorithm
// is rejected at startup rather than at the first connection.
func parsePublicKey(data []byte) (key any, methods []string, err error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, errors.New("public key: no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("public key: unsupported PEM block %q (want PUBLIC KEY or RSA PUBLIC KEY)", block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return k, []string{"RS256", "RS384", "RS512"}, nil
	case *ecdsa.PublicKey:
		// ES256/384/512 each name a curve, so only the key's own curve is allowed.
		switch k.Curve {
		case elliptic.P256():
			return k, []string{"ES256"}, nil
		case elliptic.P384():
			return k, []string{"ES384"}, nil
		case elliptic.P521():
			return k, []string{"ES512"}, nil
		}
		return nil, nil, fmt.Errorf("public key: unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return k, []string{"EdDSA"}, nil
	}
	return nil, nil, fmt.Errorf("public key: unsupported key type %T", key)
}
