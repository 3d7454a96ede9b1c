import type { Schemas } from "@/api/client";

/** One `<option>` per team (value: its id), for a team `<select>`. */
export function TeamOptions({ teams }: { teams: Schemas["TeamDto"][] | undefined }) {
  return (
    <>
      {(teams ?? []).map((t) => (
        <option key={t.id} value={t.id}>
          {t.name}
        </option>
      ))}
    </>
  );
}
