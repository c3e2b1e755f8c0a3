// TEMP STUB
use super::*;
use bytes::{Bytes, BytesMut};
pub fn encode_message(
    _msg: &Message,
    _cx: &SessionCodec,
    _out: &mut BytesMut,
) -> Result<(), EncodeError> {
    unimplemented!()
}
pub fn encode_path_attrs(_attrs: &PathAttrs, _cx: &SessionCodec, _out: &mut BytesMut) {
    unimplemented!()
}
pub fn pack_announce(
    _cx: &SessionCodec,
    _encoded_attrs: &[u8],
    _family: Family,
    _next_hop: Option<MpNextHop>,
    _nlri: &[Nlri],
    _out: &mut Vec<Bytes>,
) {
    unimplemented!()
}
pub fn pack_withdraw(_cx: &SessionCodec, _family: Family, _nlri: &[Nlri], _out: &mut Vec<Bytes>) {
    unimplemented!()
}
pub fn end_of_rib(_family: Family) -> Bytes {
    unimplemented!()
}
