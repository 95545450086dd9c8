package function

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

// Reading is one row of the building's sensor feed.
type Reading struct {
	Sensor    string  `json:"sensor"`
	Variable  string  `json:"variable"`
	Units     string  `json:"units"`
	Timestamp string  `json:"timestamp"`
	Value     float64 `json:"value"`
	Location  string  `json:"location"`
}

// Handle fetches the next row from the sensor endpoint.
func Handle(w http.ResponseWriter, r *http.Request) {
	sensor := os.Getenv("SENSOR_URL")
	if sensor == "" {
		sensor = "http://127.0.0.1:8079"
	}
	res, err := http.Get(sensor + "/next")
	if err != nil {
		http.Error(w, fmt.Sprintf("sensor: %v", err), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		http.Error(w, fmt.Sprintf("sensor answered %d", res.StatusCode), http.StatusBadGateway)
		return
	}
	var reading Reading
	if err := json.Unmarshal(body, &reading); err != nil {
		http.Error(w, fmt.Sprintf("sensor sent a bad row: %v", err), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(reading)
}
