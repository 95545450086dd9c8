package function

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
)

// call runs one function through the gateway and returns its status and body.
func call(function string, input []byte) (int, []byte, error) {
	gateway := os.Getenv("GATEWAY_URL")
	if gateway == "" {
		gateway = "http://127.0.0.1:8080"
	}
	res, err := http.Post(gateway+"/function/"+function, "application/json", bytes.NewReader(input))
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %v", function, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %v", function, err)
	}
	return res.StatusCode, body, nil
}

// Handle runs get, filter-temperature, map and moving-avg one after another (the paper's
// Listing 4): a dropped row stops the chain with 204, an error is passed back as it came.
func Handle(w http.ResponseWriter, r *http.Request) {
	var body []byte
	for _, function := range []string{"get", "filter-temperature", "map", "moving-avg"} {
		status, output, err := call(function, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			w.Write(output)
			return
		}
		body = output
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
