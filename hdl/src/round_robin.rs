//! One port's place in the fabric's round robin: is another requester ahead of it?
//!
//! The arbiter (in [`crate::broadcast_fabric`]) keeps the last port it granted as a number
//! and grants port `p` when `p` requests and no port it searches before `p` does: those
//! after the last one granted and before `p`, going round. Per port that is one function
//! of the request bitmap and the number (six inputs at four ports: one LUT6 on the ECP5),
//! where a one-hot "last granted" would double the inputs and add a level of logic.
//!
//! A block per port because rust-hdl's Verilog keeps only one loop index per expression:
//! the masks are indexed by the last port here, and by the port in the fabric.
use rust_hdl::prelude::*;

/// Whether requests ahead of port `port` pass it over, among `N` ports.
#[derive(Debug, LogicBlock)]
pub struct RoundRobinSlot<const N: usize> {
    /// Bit `q` set while port `q` requests.
    pub requests: Signal<In, Bits<32>>,
    /// The port granted last.
    pub last: Signal<In, Bits<8>>,
    /// A port searched before this one requests.
    pub passed_over: Signal<Out, Bit>,
    searched_before: [Constant<Bits<32>>; N],
    last_index: [Constant<Bits<8>>; N],
}

/// The ports the round robin looks at before `port` when `last` was granted last: those
/// after `last` and before `port`, going round (every other port when they are the same).
pub fn searched_before<const N: usize>(last: usize, port: usize) -> u64 {
    (1..N)
        .map(|step| (last + step) % N)
        .take_while(|&searched| searched != port)
        .fold(0, |mask, searched| mask | 1 << searched)
}

impl<const N: usize> RoundRobinSlot<N> {
    /// The slot of port `port`.
    pub fn new(port: usize) -> Self {
        assert!(port < N, "port {port} of {N}");
        Self {
            requests: Default::default(),
            last: Default::default(),
            passed_over: Default::default(),
            searched_before: std::array::from_fn(|last| {
                Constant::new(searched_before::<N>(last, port).into())
            }),
            last_index: std::array::from_fn(|last| {
                Constant::new(u64::try_from(last).expect("port fits").into())
            }),
        }
    }
}

impl<const N: usize> Logic for RoundRobinSlot<N> {
    #[hdl_gen]
    fn update(&mut self) {
        self.passed_over.next = false;
        // The loop index must not share a name with a signal: rust-hdl substitutes it in
        // the Verilog by name.
        for k in 0..N {
            if (self.last.val() == self.last_index[k].val())
                & (self.requests.val() & self.searched_before[k].val()).any()
            {
                self.passed_over.next = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::settle;

    #[test]
    fn searches_from_the_port_after_the_last_one_granted() {
        assert_eq!(searched_before::<4>(1, 0), 0b1100);
        assert_eq!(searched_before::<4>(1, 2), 0);
        assert_eq!(searched_before::<4>(3, 2), 0b0011);
        assert_eq!(searched_before::<4>(2, 2), 0b1011);
    }

    /// Every request pattern and last port at four ports: exactly the first requester
    /// after the last one granted is not passed over among those that request.
    #[test]
    fn exactly_one_requester_wins_and_it_is_the_next_in_turn() {
        const N: usize = 4;
        let mut slots: Vec<RoundRobinSlot<N>> = (0..N).map(RoundRobinSlot::new).collect();
        for slot in &mut slots {
            slot.connect_all();
        }
        for requests in 1_u64..(1 << N) {
            for last in 0..N {
                let winners: Vec<usize> = (0..N)
                    .filter(|&port| {
                        let slot = &mut slots[port];
                        slot.requests.next = requests.into();
                        slot.last.next = u64::try_from(last).expect("small").into();
                        settle(slot);
                        requests & (1 << port) != 0 && !slot.passed_over.val()
                    })
                    .collect();
                let expected = (1..=N)
                    .map(|step| (last + step) % N)
                    .find(|&port| requests & (1 << port) != 0);
                assert_eq!(
                    winners,
                    Vec::from_iter(expected),
                    "{requests:04b} after {last}"
                );
            }
        }
    }
}
