import { describe, expect, it } from "vitest";
import { canCancel, canRetry, jobTypeLabel, prettyPayload, queueLabel } from "./jobs";
import type { JobStatus } from "./types";

const ALL: JobStatus[] = ["Pending", "Running", "Done", "Failed", "Killed"];

describe("job actions", () => {
  it("offers retry on dead and retrying jobs only", () => {
    expect(ALL.filter(canRetry)).toEqual(["Failed", "Killed"]);
  });
  it("offers cancel on pending and retrying jobs only", () => {
    expect(ALL.filter(canCancel)).toEqual(["Pending", "Failed"]);
  });
});

describe("labels", () => {
  it("names queues and job types", () => {
    expect(queueLabel("email")).toBe("Email");
    expect(queueLabel("report")).toBe("report");
    expect(jobTypeLabel("email.order_confirmation")).toBe("Email · order confirmation");
    expect(jobTypeLabel("notify.order-placed")).toBe("Notification · order placed");
    expect(jobTypeLabel("plain")).toBe("plain");
  });
  it("shows payloads as indented JSON, raw text as is", () => {
    expect(prettyPayload({ order_id: "o1" })).toBe('{\n  "order_id": "o1"\n}');
    expect(prettyPayload("\uFFFDhi")).toBe("\uFFFDhi");
  });
});
