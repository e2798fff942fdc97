//! 领导结对联系: leaders paired with streets and communities. A city leader is paired with streets
//! anywhere in the city; a banner/district leader with streets or communities of their own
//! district. A pairing is data (`leader_pairings`), checked here against the org tree before it is
//! written; the incidents a pairing concerns are those inside its area.

use crate::{AreaCode, Level, OrgIndex, PersonId, Role};

/// One leader paired with one street or community.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pairing {
    pub leader: PersonId,
    pub area: AreaCode,
}

/// Why a pairing does not fit the org tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error("{0} is not a person of the org")]
    UnknownPerson(PersonId),
    #[error("{0} is not a leader (role leader)")]
    NotALeader(PersonId),
    #[error("{0} is not a unit of the org")]
    UnknownArea(AreaCode),
    #[error("{leader} serves at {posted}: a {level} leader is paired with {allowed}, not {area}")]
    Misfit {
        leader: PersonId,
        posted: AreaCode,
        level: &'static str,
        allowed: &'static str,
        area: AreaCode,
    },
}

/// Checks that `pairing` names a leader and a street or community they may be paired with.
pub fn check(org: &OrgIndex, pairing: &Pairing) -> Result<(), PairingError> {
    let person = org
        .person(&pairing.leader)
        .ok_or_else(|| PairingError::UnknownPerson(pairing.leader.clone()))?;
    let Role::Leader { area: posted } = &person.role else {
        return Err(PairingError::NotALeader(pairing.leader.clone()));
    };
    if org.unit(&pairing.area).is_none() {
        return Err(PairingError::UnknownArea(pairing.area.clone()));
    }
    if fits(posted, &pairing.area) {
        Ok(())
    } else {
        let (name, allowed) = match posted.level() {
            Level::City => ("city", "streets"),
            _ => ("district", "the streets and communities of their district"),
        };
        Err(PairingError::Misfit {
            leader: pairing.leader.clone(),
            posted: posted.clone(),
            level: name,
            allowed,
            area: pairing.area.clone(),
        })
    }
}

/// Whether a leader posted at `posted` may be paired with `area` (known to the org): a city
/// leader with any street, a district leader with a street or community of their district.
pub fn fits(posted: &AreaCode, area: &AreaCode) -> bool {
    let level = area.level();
    let fits_level = match posted.level() {
        Level::City => level == Level::Street,
        _ => matches!(level, Level::Street | Level::Community),
    };
    fits_level && posted.contains(area)
}

/// The areas `leader` is paired with, in `pairings`.
pub fn paired_areas<'a>(
    pairings: &'a [Pairing],
    leader: &'a PersonId,
) -> impl Iterator<Item = &'a AreaCode> + 'a {
    pairings
        .iter()
        .filter(move |p| p.leader == *leader)
        .map(|p| &p.area)
}

/// The leaders concerned by an incident at `grid`: those paired with its street or community
/// (each once, in order).
pub fn concerned<'a>(pairings: &'a [Pairing], grid: &AreaCode) -> Vec<&'a PersonId> {
    let mut leaders: Vec<&PersonId> = pairings
        .iter()
        .filter(|p| p.area.contains(grid))
        .map(|p| &p.leader)
        .collect();
    leaders.sort();
    leaders.dedup();
    leaders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ordos;

    fn area(code: &str) -> AreaCode {
        code.parse().unwrap()
    }

    fn pairing(leader: &str, code: &str) -> Pairing {
        Pairing {
            leader: leader.parse().unwrap(),
            area: area(code),
        }
    }

    #[test]
    fn every_street_and_community_of_ordos_has_its_paired_leaders() {
        let mut dataset = ordos::dataset();
        let leaders = ordos::leaders(&dataset);
        dataset.people.extend(leaders.people.clone());
        let org = OrgIndex::build(dataset).expect("the dataset with its leaders is consistent");
        for p in &leaders.pairings {
            check(&org, p).unwrap_or_else(|e| panic!("{e}"));
        }
        for unit in org.units() {
            let paired = leaders.pairings.iter().filter(|p| p.area == unit.code);
            match unit.level() {
                Level::Street => {
                    let leaders: Vec<&Pairing> = paired.collect();
                    assert!(!leaders.is_empty(), "street {} has no leader", unit.code);
                    for p in leaders {
                        let person = org.person(&p.leader).unwrap();
                        assert_eq!(
                            person.role,
                            Role::Leader {
                                area: area(ordos::CITY_CODE)
                            }
                        );
                    }
                }
                Level::Community => {
                    let leaders: Vec<&Pairing> = paired.collect();
                    assert!(!leaders.is_empty(), "community {} has no leader", unit.code);
                    for p in leaders {
                        let person = org.person(&p.leader).unwrap();
                        let district = unit.code.at_level(Level::District).unwrap();
                        assert_eq!(person.role, Role::Leader { area: district });
                    }
                }
                _ => assert_eq!(paired.count(), 0, "{} is paired", unit.code),
            }
        }
        // Every leader follows at least one area and no more than a leader can visit.
        for leader in &leaders.people {
            let n = paired_areas(&leaders.pairings, &leader.id).count();
            assert!((1..=8).contains(&n), "{} follows {n} areas", leader.id);
        }
        assert_eq!(ordos::leaders(&ordos::dataset()), leaders, "deterministic");
    }

    #[test]
    fn a_pairing_fits_the_leaders_post() {
        let mut dataset = ordos::dataset();
        dataset.people.extend(ordos::leaders(&dataset).people);
        let org = OrgIndex::build(dataset).unwrap();
        let city_leader = "ld-150600-01";
        let district_leader = "ld-150602-01";
        // A street of 东胜区 (150602) and one of its communities; a community of 康巴什区.
        let street = "150602001";
        let community = "150602001001";
        let elsewhere = "150603001001";
        assert_eq!(check(&org, &pairing(city_leader, street)), Ok(()));
        assert!(matches!(
            check(&org, &pairing(city_leader, community)),
            Err(PairingError::Misfit { .. })
        ));
        assert_eq!(check(&org, &pairing(district_leader, community)), Ok(()));
        assert_eq!(check(&org, &pairing(district_leader, street)), Ok(()));
        assert!(matches!(
            check(&org, &pairing(district_leader, elsewhere)),
            Err(PairingError::Misfit { .. })
        ));
        assert!(matches!(
            check(&org, &pairing(district_leader, "150602001001001")),
            Err(PairingError::Misfit { .. })
        ));
        assert_eq!(
            check(&org, &pairing("op-150600", street)),
            Err(PairingError::NotALeader("op-150600".parse().unwrap()))
        );
        assert_eq!(
            check(&org, &pairing("ld-nobody", street)),
            Err(PairingError::UnknownPerson("ld-nobody".parse().unwrap()))
        );
        assert_eq!(
            check(&org, &pairing(city_leader, "150602099")),
            Err(PairingError::UnknownArea(area("150602099")))
        );
    }

    #[test]
    fn an_incident_concerns_the_leaders_of_its_street_and_community() {
        let pairings = vec![
            pairing("ld-a", "150602001"),
            pairing("ld-b", "150602001001"),
            pairing("ld-c", "150602001002"),
            pairing("ld-a", "150602001001"),
        ];
        let grid = area("150602001001007");
        let concerned: Vec<&str> = concerned(&pairings, &grid)
            .into_iter()
            .map(PersonId::as_str)
            .collect();
        assert_eq!(concerned, ["ld-a", "ld-b"]);
        assert!(concerned_is_empty_elsewhere(&pairings));
    }

    fn concerned_is_empty_elsewhere(pairings: &[Pairing]) -> bool {
        concerned(pairings, &area("150603001001001")).is_empty()
    }
}
