"""The standards and releases the generator writes, and what differs between them."""

from __future__ import annotations

from dataclasses import dataclass

from hub.domain.catalogue import Standaard


@dataclass(frozen=True, slots=True)
class Profile:
    standaard: Standaard
    release: str  # "3.2"
    spec: str  # the model file with its messages (in spec/)
    codelists: str  # whose standard-specific code lists the basisschema uses
    modelled: bool  # no public schema: the whole release is modelled by this project
    # Messages of an official release for which no public schema was found: modelled by this project,
    # as the note says.
    modelled_messages: frozenset[str] = frozenset()
    modelled_note: str = ""

    @property
    def slug(self) -> str:
        return self.standaard.slug

    @property
    def folder(self) -> str:
        """The folder under xsd/: iwmo-3.2, ieb-1.0 ..."""
        return f"{self.slug}-{self.release}"

    @property
    def versie(self) -> str:
        """BerichtVersie: the release's major number."""
        return self.release.split(".")[0]

    @property
    def subversie(self) -> str:
        """BerichtSubversie: the release's minor number."""
        return self.release.split(".")[1]

    def namespace(self, part: str) -> str:
        """The target namespace of the basisschema (part="basisschema") or of a message (part="wmo301")."""
        return f"http://www.istandaarden.nl/{self.slug}/{self.release.replace('.', '_')}/{part}/schema"


PROFILES: tuple[Profile, ...] = (
    Profile(
        Standaard.IWMO,
        "3.2",
        "zorg.txt",
        "iwmo",
        modelled=False,
        modelled_messages=frozenset({"302", "306", "308", "316", "318", "320", "325"}),
        modelled_note=(
            "No public iWmo 3.2 schema was found for this message: it is MODELLED BY THIS PROJECT after "
            "the iJw 3.2 schema of the same number (same structure, iWmo namespace, codes and code lists)."
        ),
    ),
    Profile(Standaard.IJW, "3.2", "zorg.txt", "ijw", modelled=False),
    Profile(Standaard.IEB, "1.0", "ieb.txt", "iwmo", modelled=True),
    Profile(Standaard.IPGB, "1.0", "ipgb.txt", "iwmo", modelled=True),
)
