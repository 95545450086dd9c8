// The smart-building use case of the Dyninka paper (Listing 2), as one Swift file.
// Locally: `dyninka run App.swift --local`. Distributed: `dyninka run App.swift`.
import Dyninka
import Foundation

/// One row of the building's sensor feed (Urban Observatory style).
struct Reading: Codable {
    var sensor: String
    var variable: String
    var units: String
    var timestamp: String
    var value: Double
    var location: String
}

struct Temperature: Codable { var value: Double }
struct Average: Codable { var average: Double }

@Placed("movingAvg") var count = 0
@Placed("movingAvg") var average = 0.0

/// The sensor endpoint (SENSOR_URL, started by `dyninka run`).
let sensor = (ProcessInfo.processInfo.environment["SENSOR_URL"] ?? "http://127.0.0.1:8079") + "/next"

/// Fetches the next row from the sensor endpoint.
/// Async: under dyninka-host the fetch runs on the host's event loop and never blocks other requests.
@Service func get() async throws -> Reading {
    try await Fetch.json(Reading.self, from: sensor)
}

extension Reading {
    /// Returning nil drops the row: the chain stops and the caller gets 204.
    @Service func filterTemperature() -> Reading? { variable == "Temperature" ? self : nil }
    @Service func map() -> Temperature { Temperature(value: value) }
}

extension Temperature {
    @Service(near: "map") func movingAvg() -> Average {
        average = (value + Double(count) * average) / Double(count + 1)
        count += 1
        return Average(average: average)
    }
}

@main struct SmartBuilding {
    static func main() async throws {
        let rows = Int(ProcessInfo.processInfo.environment["ROWS"] ?? "") ?? 1
        for _ in 0..<rows {
            if let result = try await get().filterTemperature()?.map().movingAvg() {
                print(result.average)
            }
        }
    }
}
